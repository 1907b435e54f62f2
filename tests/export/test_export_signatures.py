"""The exported ABS's signatures: outputs equal to the in-process model, checked inputs, the REST
request body of README, composition in tf.function and Keras, the settings it carries."""

from __future__ import annotations

import json

import keras
import numpy as np
import pytest
import tensorflow as tf

from abs_tf.models.abs.certify import l2_lower_bounds
from abs_tf.models.abs.confidence import confidence_softmax

CLASS_OUTPUTS = {"probabilities", "logits", "classes"}


def _uint8(images):
    return np.round(images[..., 0] * 255).astype(np.uint8)


def test_signatures_and_outputs_equal_the_in_process_model(abs_loaded, small_abs, digits):
    x, _ = digits
    assert set(abs_loaded.signatures) == {"serving_default", "classify_uint8", "explain", "config"}
    out = abs_loaded.signatures["serving_default"](images=tf.constant(x))
    assert set(out) == CLASS_OUTPUTS and out["classes"].dtype == tf.int64
    logits = small_abs(x).numpy()
    np.testing.assert_allclose(out["logits"].numpy(), logits, atol=1e-5)
    np.testing.assert_allclose(out["probabilities"].numpy(), confidence_softmax(logits).numpy(), atol=1e-5)
    np.testing.assert_array_equal(out["classes"].numpy(), logits.argmax(1))
    # MNIST pixels are k/255: the uint8 signature sees exactly the same images.
    raw = abs_loaded.signatures["classify_uint8"](images=tf.constant(_uint8(x)))
    np.testing.assert_allclose(raw["logits"].numpy(), out["logits"].numpy(), atol=1e-6)


def test_explain_returns_the_search_and_the_certified_estimate(abs_loaded, small_abs, digits):
    x, _ = digits
    out = abs_loaded.signatures["explain"](images=tf.constant(x))
    search = small_abs.search(x)
    assert out["reconstructions"].shape == (4, 28, 28, 10) and out["latents"].shape == (4, 10, 8)
    for key in ("losses", "reconstructions", "latents"):
        np.testing.assert_allclose(out[key].numpy(), search[key].numpy(), atol=1e-5)
    np.testing.assert_allclose(out["logits"].numpy(), small_abs(x).numpy(), atol=1e-5)
    expected = l2_lower_bounds(x, search["reconstructions"].numpy(), search["latents"].numpy(),
                               out["classes"].numpy(), beta=small_abs.beta)
    assert np.all(expected > 0)          # real digits: a positive estimate, so the comparison means something
    np.testing.assert_allclose(out["certified_l2"].numpy(), expected, rtol=1e-4)


def test_settings_travel_in_the_artifact(abs_export, abs_loaded, small_abs):
    settings = json.loads((abs_export / "assets" / "abs_config.json").read_text())
    search = settings["abs_search"]
    expected = small_abs.search_config()
    for key in ("n_samples", "n_steps", "learning_rate", "radius", "beta", "projection", "binary", "loss_scalings"):
        assert search[key] == expected[key], key
    assert search["n_samples"] == 60 and search["n_steps"] == 3 and search["decoded_samples"] == "decoded_at_load"
    assert settings["model"] == "abs" and settings["probabilities"] == "calibrated" and settings["xla"] == "none"
    config = abs_loaded.signatures["config"]()
    assert json.loads(config["json"].numpy().decode()) == settings
    assert int(config["n_samples"]) == 60 and int(config["n_steps"]) == 3
    assert config["projection"].numpy().decode() == expected["projection"]
    np.testing.assert_allclose(config["loss_scalings"].numpy(), expected["loss_scalings"])


def test_decoded_samples_are_decoded_at_load_not_stored(abs_export, abs_loaded, small_abs):
    """The SavedModel holds no decoded samples (a few KB of variables for 60 x 10 images that
    would take 1.9 MB); the loaded model decodes the same table as the in-process model."""
    stored_bytes = 4 * 784 * 10 * 60
    variables = sum(f.stat().st_size for f in (abs_export / "variables").iterdir())
    assert variables < stored_bytes / 10
    table_var, norms_var = abs_loaded.model._decoded
    table = tf.raw_ops.ReadVariableOp(resource=table_var.resource_handle, dtype=tf.float32).numpy()
    np.testing.assert_allclose(table, small_abs.reconstructions_t.numpy(), atol=1e-6)
    norms = tf.raw_ops.ReadVariableOp(resource=norms_var.resource_handle, dtype=tf.float32).numpy()
    np.testing.assert_allclose(norms, small_abs.reconstruction_sq_norms.numpy(), rtol=1e-5)


def test_tf1_session_loader_runs_the_init_op(abs_export, small_abs, digits):
    """TF Serving, saved_model_cli run and C++ load a SavedModel into a session and run its
    __saved_model_init_op, which must decode the samples there too."""
    x, _ = digits
    with tf.Graph().as_default(), tf.compat.v1.Session() as session:
        meta = tf.compat.v1.saved_model.loader.load(session, ["serve"], str(abs_export))
        signature = meta.signature_def["serving_default"]
        logits = session.run(signature.outputs["logits"].name, {signature.inputs["images"].name: x})
    np.testing.assert_allclose(logits, small_abs(x).numpy(), atol=1e-5)


@pytest.mark.parametrize("name", ["serving_default", "explain"])
@pytest.mark.parametrize("bad, message", [
    (np.zeros((2, 28, 28, 4), np.float32), r"images must have shape \[B, 28, 28, 1\], got \[2, 28, 28, 4\]"),
    (np.zeros((28, 28, 1), np.float32), r"images must have shape \[B, 28, 28, 1\], got \[28, 28, 1\]"),
    (np.zeros((1, 28, 28, 1, 1), np.float32), r"images must have shape \[B, 28, 28, 1\], got \[1, 28, 28, 1, 1\]"),
    (np.full((1, 28, 28, 1), np.nan, np.float32), "images contain NaN or Inf"),
    (np.full((1, 28, 28, 1), np.inf, np.float32), "images contain NaN or Inf"),
    (np.full((1, 28, 28, 1), 255.0, np.float32), r"images have pixels > 1; expected \[0, 1\]"),
    (np.full((1, 28, 28, 1), -0.5, np.float32), r"images have pixels < 0; expected \[0, 1\]"),
], ids=["channels", "no_batch", "rank_5", "nan", "inf", "above_1", "below_0"])
def test_bad_float_inputs_raise_invalid_argument_naming_them(abs_loaded, name, bad, message):
    with pytest.raises(tf.errors.InvalidArgumentError, match=message):
        abs_loaded.signatures[name](images=tf.constant(bad))


@pytest.mark.parametrize("shape", [(2, 28, 28, 1), (2, 32, 32), (784,)])
def test_bad_uint8_shapes_raise_invalid_argument_naming_them(abs_loaded, shape):
    got = ", ".join(str(d) for d in shape)
    with pytest.raises(tf.errors.InvalidArgumentError,
                       match=rf"images \(uint8 pixels 0..255\) must have shape \[B, 28, 28\], got \[{got}\]"):
        abs_loaded.signatures["classify_uint8"](images=tf.zeros(shape, tf.uint8))


def test_empty_batch(abs_loaded):
    assert abs_loaded.signatures["serving_default"](images=tf.zeros([0, 28, 28, 1]))["classes"].shape == (0,)
    assert abs_loaded.signatures["classify_uint8"](images=tf.zeros([0, 28, 28], tf.uint8))["logits"].shape == (0, 10)


def _predict_like_tf_serving(loaded, body: str):
    """TF Serving's REST predict in row format: each instance is a dict keyed by the signature's
    input names; instances are stacked along a new batch axis, as the server does."""
    request = json.loads(body)
    signature = loaded.signatures[request.get("signature_name", "serving_default")]
    specs = signature.structured_input_signature[1]
    instances = request["instances"]
    assert all(set(instance) == set(specs) for instance in instances), "instance keys must be the input names"
    inputs = {key: tf.constant(np.array([instance[key] for instance in instances]), spec.dtype)
              for key, spec in specs.items()}
    return signature(**inputs)


def test_rest_request_body_of_readme_feeds_the_signature(abs_loaded, digits):
    x, _ = digits
    body = json.dumps({"signature_name": "classify_uint8", "instances": [{"images": img.tolist()}
                                                                          for img in _uint8(x[:2])]})
    out = _predict_like_tf_serving(abs_loaded, body)
    direct = abs_loaded.signatures["serving_default"](images=tf.constant(x[:2]))
    np.testing.assert_array_equal(out["classes"].numpy(), direct["classes"].numpy())
    body = json.dumps({"signature_name": "serving_default", "instances": [{"images": img.tolist()} for img in x[:2]]})
    np.testing.assert_allclose(_predict_like_tf_serving(abs_loaded, body)["logits"].numpy(),
                               direct["logits"].numpy(), atol=1e-6)


def test_composes_inside_tf_function_and_keras(abs_export, abs_loaded, small_abs, digits):
    x, _ = digits
    signature = abs_loaded.signatures["serving_default"]

    @tf.function
    def ensemble_vote(images):                  # a client's own graph around the export
        return signature(images=images)["probabilities"] * 2.0

    expected = confidence_softmax(small_abs(x)).numpy()
    np.testing.assert_allclose(ensemble_vote(tf.constant(x)).numpy(), 2 * expected, atol=1e-5)

    layer = keras.layers.TFSMLayer(str(abs_export), call_endpoint="serving_default")
    inputs = keras.Input([28, 28, 1])
    keras_model = keras.Model(inputs, layer(inputs)["probabilities"])
    np.testing.assert_allclose(keras_model.predict(x, verbose=0), expected, atol=1e-5)
    assert layer.weights == []          # the decoded samples are no variable that Keras would copy
