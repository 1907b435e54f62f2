"""The baselines: CNN / binary CNN / Madry / substitute (abs_tf/models/cnn.py), nearest neighbour
(abs_tf/models/nearest_neighbor.py) and the official CNN weights. Their training:
tests/training/test_classifier_training.py."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from abs_tf.models import cnn
from abs_tf.models.nearest_neighbor import NearestNeighbor

ARCHS = [("abs_cnn", False), ("abs_cnn", True), ("madry", False), ("substitute", False)]


@pytest.fixture(scope="module")
def small_nn(mnist_train):
    """Nearest neighbour on 600 training images, odd chunk size (padding and several chunks per class)."""
    x, y = mnist_train
    idx = np.random.default_rng(0).choice(len(x), 600, replace=False)
    return NearestNeighbor(x[idx], y[idx], chunk_size=23), x[idx], y[idx]


@pytest.fixture(scope="module")
def models(small_nn):
    """One instance of every baseline (nearest neighbour with one chunk per class: fast)."""
    _, x, y = small_nn
    return [cnn.ImageClassifier(a, binary=b) for a, b in ARCHS] + [NearestNeighbor(x, y, chunk_size=100)]


# --------------------------------------------------------------------------- call convention and input checks

def test_every_model_maps_images_to_logits(models, mnist_test_small):
    x = mnist_test_small[0][:3]
    for model in models:
        for batch in (x, x[:1], tf.constant(x), x.astype(np.float64)):
            out = model(batch)
            assert out.dtype == tf.float32 and tuple(out.shape) == (len(batch), 10), model.name
            assert np.all(np.isfinite(out.numpy())), model.name
    for model in (models[1], models[-1]):  # also inside a tf.function (as attacks and export call them)
        graph_out = tf.function(lambda t: model(t))(tf.constant(x))
        np.testing.assert_allclose(graph_out.numpy(), model(x).numpy(), rtol=1e-5, atol=1e-5)


def test_every_model_checks_its_input(models, mnist_test_small):
    x = mnist_test_small[0][:2]
    for model in models:
        with pytest.raises(TypeError, match="divide uint8"):
            model((x * 255).astype(np.uint8))
        with pytest.raises(ValueError, match=r"\[B, 28, 28, 1\]"):
            model(x[..., 0])
        with pytest.raises(ValueError, match=r"\[B, 28, 28, 1\]"):
            model(np.zeros((2, 32, 32, 1), np.float32))
        bad = x.copy()
        bad[0, 3, 3, 0] = np.nan
        with pytest.raises(tf.errors.InvalidArgumentError, match="NaN"):
            model(bad)
        with pytest.raises(tf.errors.InvalidArgumentError, match="> 1"):
            model(x * 255.0)
        with pytest.raises(tf.errors.InvalidArgumentError, match="< 0"):
            model(x - 0.5)


def test_unknown_architecture_is_rejected():
    with pytest.raises(ValueError, match="unknown architecture"):
        cnn.ImageClassifier("resnet")


def test_architectures_match_their_descriptions():
    layers = {layer.name: layer for layer in cnn.ImageClassifier("abs_cnn").net.layers}
    assert [layers[f"conv_{i}"].filters for i in range(4)] == [20, 70, 256, 10]
    assert [layers[f"conv_{i}"].kernel_size for i in range(4)] == [(5, 5), (4, 4), (3, 3), (5, 5)]
    assert [layers[f"conv_{i}"].strides for i in range(4)] == [(1, 1), (2, 2), (2, 2), (1, 1)]
    assert all(layers[f"bn_{i}"].epsilon == 1e-5 for i in range(3))
    madry = {layer.name: layer for layer in cnn.ImageClassifier("madry").net.layers}
    assert (madry["conv_0"].filters, madry["conv_0"].kernel_size) == (32, (5, 5))
    assert (madry["conv_1"].filters, madry["conv_1"].kernel_size) == (64, (5, 5))
    assert madry["fc_0"].units == 1024 and madry["logits"].units == 10
    assert madry["fc_0"].kernel.shape == (7 * 7 * 64, 1024)


# --------------------------------------------------------------------------- binarization

def test_binary_model_sees_only_the_binarized_image(mnist_test_small):
    x = mnist_test_small[0][:8]
    model = cnn.ImageClassifier("abs_cnn", binary=True)
    np.testing.assert_array_equal(model(x).numpy(), model((x >= 0.5).astype(np.float32)).numpy())
    # threshold exactly as the original: 0.5 -> 1, just below -> 0
    np.testing.assert_array_equal(cnn.binarize(tf.constant([0.0, 0.4999, 0.5, 1.0])).numpy(), [0, 0, 1, 1])
    # moving pixels without crossing 0.5 changes nothing
    nudged = np.clip(np.where(x >= 0.5, x + 0.2, x - 0.2), 0, 1).astype(np.float32)
    nudged = np.where((x >= 0.5) == (nudged >= 0.5), nudged, x)
    np.testing.assert_array_equal(model(x).numpy(), model(nudged).numpy())


def test_binary_model_input_gradient_is_none_i_e_zero(mnist_test_small):
    """What a white-box attacker's gradient sees: the binarization is a step function, its
    derivative is zero almost everywhere; TF has no gradient for the comparison, so the tape
    returns None (to be read as an all-zero gradient). A plain model gives a nonzero one."""
    x = tf.constant(mnist_test_small[0][:4])
    for binary in (True, False):
        model = cnn.ImageClassifier("abs_cnn", binary=binary)
        with tf.GradientTape(persistent=True) as tape:
            tape.watch(x)
            loss = tf.reduce_sum(tf.nn.sparse_softmax_cross_entropy_with_logits(
                tf.constant(mnist_test_small[1][:4]), model(x)))
        grad = tape.gradient(loss, x)
        if binary:
            assert grad is None
            grad = tape.gradient(loss, x, unconnected_gradients=tf.UnconnectedGradients.ZERO)
            assert np.all(grad.numpy() == 0.0)
        else:
            assert grad is not None and np.abs(grad.numpy()).max() > 0


def test_fgsm_does_nothing_to_the_binary_cnn(mnist_test_small):
    """Consequence: gradient attacks on the binary model do not move the input (hence BPDA)."""
    from cleverhans.tf2.attacks.fast_gradient_method import fast_gradient_method
    x, y = (tf.constant(a[:4]) for a in mnist_test_small)
    model = cnn.ImageClassifier("abs_cnn", binary=True)
    with pytest.raises((ValueError, TypeError, AttributeError)):
        # cleverhans cannot even build a perturbation from a None gradient
        fast_gradient_method(model, x, 0.3, np.inf, clip_min=0.0, clip_max=1.0, y=y)


# --------------------------------------------------------------------------- official weights

# How close the converted official CNN comes to the torch logits depends on TF's conv kernels.
# The torch reference is float32 with its own rounding error: an exact float64 evaluation of the
# same network differs from it by up to 1.9e-5 (CNN) / 2.2e-5 (binary CNN) over the 10000 test
# images (logits reach +-34). Measured max |ours - torch| over all 10000:
#   TF_ENABLE_ONEDNN_OPTS=0 (Eigen convs): 2.5e-5 / 2.7e-5 (ours vs float64: 1.5e-5);
#   TF_ENABLE_ONEDNN_OPTS=1 (oneDNN, the abs_tf default): 1.3e-4 / 1.9e-4 (ours vs float64: 1.2e-4 / 1.8e-4).
# The argmax agrees on every image either way. A conversion error (axes, BN) gives O(1) differences.
ATOL_EIGEN, ATOL_ONEDNN = 3e-5, 2.5e-4
_OFFICIAL_CHECK = """
import json, sys, numpy as np
from abs_tf import data
from abs_tf.models import cnn
n, binary, ref_dir = int(sys.argv[1]), sys.argv[2] == "1", sys.argv[3]
model = cnn.load_official_cnn(ref_dir + "/cnn_weights.npz", binary=binary)
x, y = data.load_mnist("test")
logits = cnn.predict_logits(model, x[:n], 1000)
ref = np.load(ref_dir + "/cnn_logits_test_all10000.npz")["binary_cnn_logits" if binary else "cnn_logits"][:n]
print(json.dumps({"max_abs_diff": float(np.abs(logits - ref).max()),
                  "argmax_equal": bool((logits.argmax(1) == ref.argmax(1)).all()),
                  "accuracy": float(np.mean(logits.argmax(1) == y[:n]))}))
"""


def _official_check_subprocess(reference_dir, n, binary, onednn):
    import json
    import os
    import subprocess
    import sys
    env = {**os.environ, "TF_ENABLE_ONEDNN_OPTS": "1" if onednn else "0", "TF_CPP_MIN_LOG_LEVEL": "3"}
    proc = subprocess.run([sys.executable, "-c", _OFFICIAL_CHECK, str(n), "1" if binary else "0", str(reference_dir)],
                          capture_output=True, text=True, timeout=900, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("binary", [False, True])
def test_official_cnn_matches_torch_logits_500(reference_dir, binary):
    import os
    from abs_tf import data
    model = cnn.load_official_cnn(reference_dir / "cnn_weights.npz", binary=binary)
    x, _ = data.load_mnist("test")
    logits = cnn.predict_logits(model, x[:500])
    ref = np.load(reference_dir / "cnn_logits_test_all10000.npz")["binary_cnn_logits" if binary else "cnn_logits"]
    atol = ATOL_EIGEN if os.environ.get("TF_ENABLE_ONEDNN_OPTS") == "0" else ATOL_ONEDNN
    np.testing.assert_allclose(logits, ref[:500], atol=atol, rtol=0)
    np.testing.assert_array_equal(logits.argmax(1), ref[:500].argmax(1))


@pytest.mark.slow
@pytest.mark.parametrize("onednn", [False, True], ids=["eigen", "onednn"])
@pytest.mark.parametrize("binary", [False, True], ids=["cnn", "binary_cnn"])
def test_official_cnn_matches_torch_logits_all_10000(reference_dir, binary, onednn):
    result = _official_check_subprocess(reference_dir, 10000, binary, onednn)
    assert result["max_abs_diff"] <= (ATOL_ONEDNN if onednn else ATOL_EIGEN), result
    assert result["argmax_equal"] and result["accuracy"] > (0.988 if binary else 0.993), result


def test_official_weight_errors_name_the_problem(reference_dir, tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.npz"):
        cnn.load_official_cnn(tmp_path / "missing.npz")
    with pytest.raises(KeyError, match="nope/conv_0.weight"):
        cnn.load_official_cnn(reference_dir / "cnn_weights.npz", key_prefix="nope/")


# --------------------------------------------------------------------------- nearest neighbour

def test_nearest_neighbor_matches_brute_force_numpy(small_nn, mnist_test_small):
    model, train_x, train_y = small_nn
    x = mnist_test_small[0][:40]
    t = train_x.reshape(len(train_x), -1).astype(np.float64)
    d = np.sqrt(((x.reshape(len(x), 1, -1).astype(np.float64) - t[None]) ** 2).sum(-1))  # [40, 600]
    expected = np.stack([-d[:, train_y == c].min(axis=1) for c in range(10)], axis=1)
    np.testing.assert_allclose(model(x).numpy(), expected, atol=1e-5)
    # chunking does not matter
    other = NearestNeighbor(train_x, train_y, chunk_size=1000)
    np.testing.assert_allclose(other(x).numpy(), expected, atol=1e-5)


def test_nearest_neighbor_of_a_training_image_is_itself(small_nn):
    model, train_x, train_y = small_nn
    logits = model(train_x[:5]).numpy()
    np.testing.assert_allclose(logits[np.arange(5), train_y[:5]], 0.0, atol=1e-5)
    np.testing.assert_array_equal(logits.argmax(1), train_y[:5])
    with tf.GradientTape() as tape:  # distance 0: the gradient is finite (zero), not NaN
        x = tf.constant(train_x[:5])
        tape.watch(x)
        out = model(x)
    assert np.all(np.isfinite(tape.gradient(out, x).numpy()))


def test_nearest_neighbor_gradient_points_away_from_the_neighbour(small_nn, mnist_test_small):
    model, train_x, _ = small_nn
    x = tf.constant(mnist_test_small[0][:6])
    with tf.GradientTape() as tape:
        tape.watch(x)
        logit = model(x)[:, 4]
    grad = tape.gradient(logit, x).numpy().reshape(6, -1)
    nearest = tf.gather(tf.reshape(model.train_chunks, [-1, 784]), model.nearest(x)[:, 4]).numpy()
    direction = x.numpy().reshape(6, -1) - nearest
    expected = -direction / np.linalg.norm(direction, axis=1, keepdims=True)  # d(-||x - t||)/dx
    np.testing.assert_allclose(grad, expected, atol=1e-5)


def test_nearest_neighbor_rejects_bad_training_sets(mnist_test_small):
    x, y = mnist_test_small
    with pytest.raises(ValueError, match="no training image of class"):
        NearestNeighbor(x[y != 7], y[y != 7])
    with pytest.raises(ValueError, match="chunk_size"):
        NearestNeighbor(x, y, chunk_size=0)
