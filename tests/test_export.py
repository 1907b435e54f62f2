"""SavedModel export: versioned layout, serving signature, run-time shape check, fresh-process round trip."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import numpy as np
import pytest
import tensorflow as tf

sys.path.insert(0, str(__import__("pathlib").Path(__file__).resolve().parent.parent / "export"))
from export_savedmodel import export, export_registered  # noqa: E402

from abs_tf import registry
from abs_tf.models.abs.model import ABS, confidence_softmax, latent_samples
from abs_tf.models.abs.vae import build_decoder

WRONG_SHAPE = "images must have shape \\[B, 28, 28, 1\\], got \\[2, 28, 28, 4\\]"


def _fresh_process_logits(path, images_file):
    code = textwrap.dedent(f"""
        import numpy as np, tensorflow as tf
        m = tf.saved_model.load({str(path)!r})
        out = m.signatures["serving_default"](images=tf.constant(np.load({str(images_file)!r})))
        np.save({str(images_file)!r} + ".out.npy", out["logits"].numpy())
    """)
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True)
    return np.load(str(images_file) + ".out.npy")


def test_abs_export_round_trip_in_fresh_process(tmp_path, mnist_test_small):
    tf.keras.utils.set_random_seed(5)
    model = ABS([build_decoder() for _ in range(10)], latent_samples(100), n_steps=3, xla_kernels=False)
    path = export(model, "abs_small", tmp_path, probabilities=confidence_softmax)
    assert path == tmp_path / "abs_small" / "1"
    assert export(model, "abs_small", tmp_path) == tmp_path / "abs_small" / "2"
    x = mnist_test_small[0][:3]
    np.save(tmp_path / "x.npy", x)
    np.testing.assert_allclose(_fresh_process_logits(path, tmp_path / "x.npy"), model(x).numpy(), atol=1e-6)
    loaded = tf.saved_model.load(str(path))
    out = loaded.signatures["serving_default"](images=tf.constant(x))
    assert set(out) == {"logits", "probabilities", "classes"}
    np.testing.assert_allclose(out["probabilities"].numpy(), confidence_softmax(model(x)).numpy(), atol=1e-6)
    with pytest.raises(tf.errors.InvalidArgumentError, match="> 1"):
        loaded.signatures["serving_default"](images=tf.constant(np.full((1, 28, 28, 1), 2.0, np.float32)))
    with pytest.raises(tf.errors.InvalidArgumentError, match=WRONG_SHAPE):
        loaded.signatures["serving_default"](images=tf.zeros((2, 28, 28, 4)))


def _xla_compiled_functions(path):
    """Names of functions/nodes in a SavedModel marked _XlaMustCompile = True."""
    from tensorflow.core.protobuf import saved_model_pb2
    saved = saved_model_pb2.SavedModel()
    saved.ParseFromString((path / "saved_model.pb").read_bytes())
    found = []
    for f in saved.meta_graphs[0].graph_def.library.function:
        if f.attr.get("_XlaMustCompile") is not None and f.attr["_XlaMustCompile"].b:
            found.append(f.signature.name)
        found += [f"{f.signature.name}/{n.name}" for n in f.node_def
                  if "_XlaMustCompile" in n.attr and n.attr["_XlaMustCompile"].b]
    return found


def test_registered_abs_exports_without_xla_and_calibrated(tmp_path, mnist_test_small):
    """The registry's export variant of ABS has no XLA kernels (TF Serving keeps XLA:CPU JIT off
    by default), although the in-process model uses one by default, and gives the same logits;
    its probabilities are the calibrated ones."""
    options = dict(n_samples=50, n_steps=2)
    path = export_registered("abs", tmp_path, **options)
    assert path == tmp_path / "abs" / "1"
    assert _xla_compiled_functions(path) == []
    in_process = registry.load_model("abs", **options)
    assert in_process.xla_kernels
    x = mnist_test_small[0][:2]
    out = tf.saved_model.load(str(path)).signatures["serving_default"](images=tf.constant(x))
    np.testing.assert_allclose(out["logits"].numpy(), in_process(x).numpy(), atol=1e-6)
    np.testing.assert_allclose(out["probabilities"].numpy(), confidence_softmax(out["logits"]).numpy(), atol=1e-6)


def test_abs_xla_kernels_option_gives_the_same_logits(mnist_test_small):
    tf.keras.utils.set_random_seed(6)
    model = ABS([build_decoder() for _ in range(10)], latent_samples(100), n_steps=3)
    x = mnist_test_small[0][:2]
    np.testing.assert_allclose(model.variant(xla_kernels=False)(x).numpy(), model(x).numpy(), atol=1e-6)


def test_exported_cnn_refuses_wrong_shapes_naming_them(tmp_path, mnist_test_small):
    """Issue 19 (1): the exported CNN used to read 4 channels as a grouped convolution."""
    path = export_registered("cnn", tmp_path)
    serve = tf.saved_model.load(str(path)).signatures["serving_default"]
    x = mnist_test_small[0][:2]
    out = serve(images=tf.constant(x))
    np.testing.assert_allclose(out["logits"].numpy(), registry.load_model("cnn")(x).numpy(), atol=1e-5)
    np.testing.assert_allclose(out["probabilities"].numpy(), tf.nn.softmax(out["logits"]).numpy(), atol=1e-6)
    with pytest.raises(tf.errors.InvalidArgumentError, match=WRONG_SHAPE) as error:
        serve(images=tf.zeros((2, 28, 28, 4)))
    for symptom in ("Invalid reduction dimension", "Incompatible shapes", "output depth"):
        assert symptom not in str(error.value)
    for bad, got in (((2, 32, 32, 1), "[2, 32, 32, 1]"), ((2, 1, 28, 28), "[2, 1, 28, 28]"),
                     ((28, 28, 1), "[28, 28, 1]")):
        with pytest.raises(tf.errors.InvalidArgumentError) as error:
            serve(images=tf.zeros(bad))
        assert f"images must have shape [B, 28, 28, 1], got {got}" in str(error.value)
    assert serve(images=tf.zeros((0, 28, 28, 1)))["logits"].shape == (0, 10)


def test_export_refuses_to_overwrite(tmp_path):
    model = ABS([build_decoder() for _ in range(10)], latent_samples(50), n_steps=1)
    export(model, "m", tmp_path, version=7)
    with pytest.raises(FileExistsError):
        export(model, "m", tmp_path, version=7)


def test_export_script_end_to_end(repo_root, tmp_path):
    """The driver from another working directory: the registry finds the shipped weights."""
    proc = subprocess.run([sys.executable, str(repo_root / "export" / "export_savedmodel.py"), "--model=madry",
                           f"--export_dir={tmp_path}", "--version=3"], cwd=tmp_path, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert (tmp_path / "madry" / "3" / "saved_model.pb").is_file()
    proc = subprocess.run([sys.executable, str(repo_root / "export" / "export_savedmodel.py"), "--model=resnet"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert proc.returncode != 0 and "--model must be one of the registered models" in proc.stderr
