"""XLA: the default export has no XLA-compiled function; --xla's variant has, and gives the same
outputs and refuses the same bad inputs (its checks stay outside the compiled part, as XLA
drops assertions)."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf
from tensorflow.core.protobuf import saved_model_pb2

from abs_tf import registry
from abs_tf.export.savedmodel import export_model


def xla_compiled_functions(path):
    """Names of the functions (or nodes) of a SavedModel marked _XlaMustCompile = True."""
    saved = saved_model_pb2.SavedModel()
    saved.ParseFromString((path / "saved_model.pb").read_bytes())
    found = []
    for f in saved.meta_graphs[0].graph_def.library.function:
        if "_XlaMustCompile" in f.attr and f.attr["_XlaMustCompile"].b:
            found.append(f.signature.name)
        found += [f"{f.signature.name}/{n.name}" for n in f.node_def
                  if "_XlaMustCompile" in n.attr and n.attr["_XlaMustCompile"].b]
    return found


@pytest.fixture(scope="module")
def abs_xla_export(tmp_path_factory, small_abs):
    return export_model(small_abs, registry.get_spec("abs"), "abs", tmp_path_factory.mktemp("xla"), xla=True)


def test_default_abs_export_has_no_xla_and_xla_export_has(abs_export, abs_xla_export):
    assert xla_compiled_functions(abs_export) == []
    assert xla_compiled_functions(abs_xla_export) != []


def test_xla_abs_export_gives_the_same_outputs(abs_loaded, abs_xla_export, digits):
    x, _ = digits
    xla = tf.saved_model.load(str(abs_xla_export))
    for name in ("serving_default", "explain"):
        plain, compiled = (m.signatures[name](images=tf.constant(x)) for m in (abs_loaded, xla))
        assert set(plain) == set(compiled)
        for key in plain:
            np.testing.assert_allclose(compiled[key].numpy(), plain[key].numpy(), atol=1e-5, err_msg=f"{name}/{key}")
    for bad, message in ((np.full((1, 28, 28, 1), np.nan, np.float32), "images contain NaN or Inf"),
                         (np.zeros((2, 28, 28, 4), np.float32), r"got \[2, 28, 28, 4\]")):
        with pytest.raises(tf.errors.InvalidArgumentError, match=message):
            xla.signatures["serving_default"](images=tf.constant(bad))


def test_xla_cnn_export_gives_the_same_outputs(tmp_path, digits):
    x, _ = digits
    spec, model = registry.get_spec("cnn"), registry.load_model("cnn")
    paths = [export_model(model, spec, "cnn", tmp_path, xla=xla) for xla in (False, True)]
    assert xla_compiled_functions(paths[0]) == [] and xla_compiled_functions(paths[1]) != []
    plain, compiled = (tf.saved_model.load(str(p)).signatures["serving_default"](images=tf.constant(x)) for p in paths)
    # Logits of size ~20: XLA's and oneDNN's convolutions round differently (~2e-6 relative).
    np.testing.assert_allclose(compiled["logits"].numpy(), plain["logits"].numpy(), rtol=1e-5, atol=1e-4)
    np.testing.assert_array_equal(compiled["classes"].numpy(), plain["classes"].numpy())
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"images have pixels > 1"):
        tf.saved_model.load(str(paths[1])).signatures["serving_default"](images=tf.fill([1, 28, 28, 1], 2.0))
