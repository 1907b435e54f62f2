"""What every model does with its input (issue 19): the full shape checked at call time in the
graph, empty batches, the preprocessing protocol, and ABS's option checks."""

from __future__ import annotations

import re

import numpy as np
import pytest
import tensorflow as tf

from abs_tf import registry
from abs_tf.models import cnn
from abs_tf.models.abs.model import ABS, latent_samples
from abs_tf.models.abs.vae import build_decoder
from abs_tf.models.nearest_neighbor import NearestNeighbor
from abs_tf.models.preprocessing import BINARIZE, binarize

KERAS = [("cnn", "abs_cnn", False), ("binary_cnn", "abs_cnn", True), ("madry", "madry", False),
         ("substitute", "substitute", False)]
NAMES = [k[0] for k in KERAS] + ["nearest_neighbor", "abs", "binary_abs", "cnn_official", "binary_cnn_official"]
SYMPTOMS = ("Invalid reduction dimension", "Incompatible shapes", "output depth")


@pytest.fixture(scope="module")
def small_abs():
    """Random decoders, 50 samples, 2 steps: the ABS class at a fraction of the cost."""
    tf.keras.utils.set_random_seed(11)
    return ABS([build_decoder() for _ in range(10)], latent_samples(50), n_steps=2)


@pytest.fixture(scope="module")
def models(small_abs, mnist_test_small):
    x, y = mnist_test_small
    found = {name: cnn.ImageClassifier(arch, binary=binary) for name, arch, binary in KERAS}
    found["nearest_neighbor"] = NearestNeighbor(x, y, chunk_size=64)
    found["abs"] = small_abs
    found["binary_abs"] = small_abs.variant(binary=True)
    return found


def _model(models, name, request):
    if name.endswith("_official"):
        request.getfixturevalue("reference_dir")          # skips without the release's files
        return registry.load_model(name)
    return models[name]


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("shape", [(2, 28, 28, 4), (2, 28, 28, 2), (2, 32, 32, 1), (2, 1, 28, 28), (28, 28, 1)])
def test_wrong_shape_is_refused_in_the_graph_naming_it(models, name, shape, request):
    """Traced with unknown dimensions (a SavedModel signature may be), the model refuses a wrong
    shape when it runs, instead of reading 4 channels as a grouped convolution."""
    model = _model(models, name, request)
    fn = tf.function(lambda images: model(images), input_signature=[tf.TensorSpec(None, tf.float32)])
    got = "[" + ", ".join(map(str, shape)) + "]"
    with pytest.raises(tf.errors.InvalidArgumentError) as error:
        fn(tf.zeros(shape))
    assert f"images must have shape [B, 28, 28, 1], got {got}" in str(error.value)
    assert not any(symptom in str(error.value) for symptom in SYMPTOMS)
    with pytest.raises(ValueError, match=re.escape(f"images must have shape [B, 28, 28, 1], got {got}")):
        model(np.zeros(shape, np.float32))                 # eager: refused before any work


@pytest.mark.parametrize("name", NAMES)
def test_empty_batch_gives_empty_logits(models, name, mnist_test_small, request):
    model = _model(models, name, request)
    assert tuple(model(np.zeros((0, 28, 28, 1), np.float32)).shape) == (0, 10)
    fn = tf.function(lambda images: model(images), input_signature=[tf.TensorSpec([None] * 4, tf.float32)])
    assert tuple(fn(tf.zeros((0, 28, 28, 1))).shape) == (0, 10)
    np.testing.assert_allclose(fn(tf.constant(mnist_test_small[0][:2])).numpy(),
                               model(mnist_test_small[0][:2]).numpy(), rtol=1e-5, atol=1e-5)


# --------------------------------------------------------------------------- preprocessing protocol

@pytest.mark.parametrize("name", ["cnn", "madry", "substitute", "nearest_neighbor", "abs"])
def test_models_without_front_end_declare_none(models, name):
    assert getattr(models[name], "preprocessing", None) is None


@pytest.mark.parametrize("name", ["binary_cnn", "binary_abs"])
def test_binarizing_models_declare_their_front_end(models, name, mnist_test_small):
    model = models[name]
    assert model.preprocessing is BINARIZE
    x = mnist_test_small[0][:3]
    np.testing.assert_array_equal(model(x).numpy(), model.logits_after_preprocessing(binarize(x)).numpy())
    # Behind the front end the model responds to grey values (they are not binarized again).
    grey = np.full((1, 28, 28, 1), 0.3, np.float32)
    assert not np.array_equal(model.logits_after_preprocessing(grey).numpy(),
                              model.logits_after_preprocessing(np.zeros_like(grey)).numpy())


def _input_gradient(fn, x, label):
    x = tf.constant(x)
    with tf.GradientTape() as tape:
        tape.watch(x)
        out = fn(x)[:, label]
    return tape.gradient(out, x)


def test_binary_cnn_has_a_gradient_behind_its_front_end(models, mnist_test_small):
    model = models["binary_cnn"]
    b = binarize(mnist_test_small[0][:2]).numpy()
    assert _input_gradient(model, b, 3) is None                   # the step function: no gradient
    g = _input_gradient(model.logits_after_preprocessing, b, 3)
    assert g is not None and np.abs(g.numpy()).max() > 0


def test_binary_abs_keeps_its_envelope_gradient_behind_the_front_end(models, mnist_test_small):
    """w.r.t. the binarized input: the same gradient model(x) passes straight through."""
    model = models["binary_abs"]
    x = mnist_test_small[0][:2]
    behind = _input_gradient(model.logits_after_preprocessing, binarize(x).numpy(), 5).numpy()
    assert np.abs(behind).max() > 0
    np.testing.assert_allclose(_input_gradient(model, x, 5).numpy(), behind, atol=1e-7)


# --------------------------------------------------------------------------- ABS options

@pytest.mark.parametrize("option, value, allowed", [
    ("n_steps", 0, "an integer >= 1"), ("max_batch", 0, "an integer >= 1"), ("max_batch", -3, "an integer >= 1"),
    ("learning_rate", 0.0, "a finite number > 0"), ("learning_rate", float("nan"), "a finite number > 0"),
    ("radius", -1.0, "a finite number > 0"), ("beta", -0.5, "a finite number >= 0"),
    ("projection", "l1", "one of"), ("gradient", "exact", "one of"),
])
def test_abs_options_are_checked_naming_the_argument(small_abs, option, value, allowed):
    pattern = rf"{option} must be {re.escape(allowed)}.*got {re.escape(repr(value))}"
    with pytest.raises(ValueError, match=pattern):
        small_abs.variant(**{option: value})
    with pytest.raises(ValueError, match=pattern):       # before the weights are even looked for
        ABS.from_weights("/nonexistent/weights", n_samples=10, **{option: value})


@pytest.mark.parametrize("n_samples", [0, -5, 2.5])
def test_abs_sample_count_is_checked_before_any_work(n_samples):
    with pytest.raises(ValueError, match=r"n_samples must be an integer >= 1.*got"):
        ABS.from_weights("/nonexistent/weights", n_samples=n_samples)
    with pytest.raises(ValueError, match=r"n_samples must be an integer >= 1"):
        latent_samples(n_samples)
    with pytest.raises(ValueError, match=r"latent samples must have shape \[S, 8\] with S >= 1"):
        ABS([build_decoder() for _ in range(10)], np.zeros((0, 8), np.float32))


def test_abs_unknown_option_is_refused_before_loading():
    with pytest.raises(TypeError, match="unknown ABS options: \\['n_stepz'\\]"):
        ABS.from_weights("/nonexistent/weights", n_samples=10, n_stepz=3)
