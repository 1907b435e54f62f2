"""SavedModel export: versioned layout, serving signature, and a fresh-process round trip."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import numpy as np
import pytest
import tensorflow as tf

sys.path.insert(0, str(__import__("pathlib").Path(__file__).resolve().parent.parent / "export"))
from export_savedmodel import export  # noqa: E402

from abs_tf.models.abs.model import ABS, latent_samples
from abs_tf.models.abs.vae import build_decoder


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
    model = ABS([build_decoder() for _ in range(10)], latent_samples(100), n_steps=3)
    path = export(model, "abs_small", tmp_path, calibrated=True)
    assert path == tmp_path / "abs_small" / "1"
    assert export(model, "abs_small", tmp_path, calibrated=True) == tmp_path / "abs_small" / "2"
    x = mnist_test_small[0][:3]
    np.save(tmp_path / "x.npy", x)
    np.testing.assert_allclose(_fresh_process_logits(path, tmp_path / "x.npy"), model(x).numpy(), atol=1e-6)
    loaded = tf.saved_model.load(str(path))
    out = loaded.signatures["serving_default"](images=tf.constant(x))
    assert set(out) == {"logits", "probabilities", "classes"}
    np.testing.assert_allclose(out["probabilities"].numpy().sum(1), 1.0, atol=1e-5)
    with pytest.raises(tf.errors.InvalidArgumentError):
        loaded.signatures["serving_default"](images=tf.constant(np.full((1, 28, 28, 1), 2.0, np.float32)))
    # TF Serving keeps XLA:CPU JIT off by default: the exported graph must not need XLA,
    # although the in-process model uses an XLA kernel by default (xla_kernels=True).
    assert model.xla_kernels
    assert _xla_compiled_functions(path) == []


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


def test_abs_xla_kernels_option_gives_the_same_logits(mnist_test_small):
    tf.keras.utils.set_random_seed(6)
    model = ABS([build_decoder() for _ in range(10)], latent_samples(100), n_steps=3)
    x = mnist_test_small[0][:2]
    np.testing.assert_allclose(model.variant(xla_kernels=False)(x).numpy(), model(x).numpy(), atol=1e-6)


def test_export_refuses_to_overwrite(tmp_path):
    model = ABS([build_decoder() for _ in range(10)], latent_samples(50), n_steps=1)
    export(model, "m", tmp_path, version=7)
    with pytest.raises(FileExistsError):
        export(model, "m", tmp_path, version=7)
