"""Exports used as a client uses them: a fresh Python process without abs_tf, and saved_model_cli."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import tensorflow as tf

from abs_tf import registry
from abs_tf.export.isolation import run_without_abs_tf
from abs_tf.export.savedmodel import export_registered, ExportConfig

SAVED_MODEL_CLI = Path(sys.executable).parent / "saved_model_cli"
QUIET = {"TF_CPP_MIN_LOG_LEVEL": "2"}

CLIENT = """
import json, numpy as np, tensorflow as tf
x = np.load({images!r})
raw = np.round(x[..., 0] * 255).astype(np.uint8)
out = {{}}
for model, path in json.loads({paths!r}).items():
    m = tf.saved_model.load(path)
    for name, images in (("serving_default", x), ("explain", x), ("classify_uint8", raw)):
        if name in m.signatures:
            out.update({{f"{{model}}/{{name}}/{{k}}": v.numpy() for k, v in m.signatures[name](images=images).items()}})
np.savez({result!r}, **out)
"""


def test_exports_in_a_process_without_abs_tf(abs_export, small_abs, digits, tmp_path):
    """ABS (every signature) and the CNN, loaded where abs_tf cannot be imported, give the
    in-process outputs."""
    x, labels = digits
    cnn_export = export_registered(ExportConfig(model="cnn", export_base=str(tmp_path / "exports")))
    np.save(tmp_path / "x.npy", x)
    paths = json.dumps({"abs": str(abs_export), "cnn": str(cnn_export)})
    proc = run_without_abs_tf(CLIENT.format(images=str(tmp_path / "x.npy"), paths=paths,
                                            result=str(tmp_path / "out.npz")), timeout=600, env=QUIET)
    assert proc.returncode == 0, proc.stderr[-3000:]
    with np.load(tmp_path / "out.npz") as f:
        out = {k: f[k] for k in f.files}

    logits = small_abs(x).numpy()
    for signature in ("serving_default", "classify_uint8", "explain"):
        np.testing.assert_allclose(out[f"abs/{signature}/logits"], logits, atol=1e-5)
        np.testing.assert_array_equal(out[f"abs/{signature}/classes"], logits.argmax(1))
    np.testing.assert_allclose(out["abs/explain/reconstructions"], small_abs.search(x)["reconstructions"].numpy(),
                               atol=1e-5)
    assert out["abs/explain/certified_l2"].shape == (4,)

    cnn_logits = registry.load_model("cnn")(x).numpy()
    np.testing.assert_allclose(out["cnn/serving_default/logits"], cnn_logits, atol=1e-5)
    np.testing.assert_allclose(out["cnn/serving_default/probabilities"], tf.nn.softmax(cnn_logits).numpy(), atol=1e-5)
    np.testing.assert_array_equal(out["cnn/classify_uint8/classes"], labels)
    assert not any(key.startswith("cnn/explain/") for key in out)      # no explain for a CNN


def test_isolation_notices_abs_tf(repo_root):
    """The isolated process must fail when abs_tf can be imported, else its checks prove nothing."""
    proc = run_without_abs_tf(f"sys.path.insert(0, {str(repo_root)!r})\nimport abs_tf")
    assert proc.returncode != 0 and "abs_tf modules were imported: abs_tf" in proc.stderr
    proc = run_without_abs_tf(f"sys.path.insert(0, {str(repo_root)!r})", timeout=60)
    assert proc.returncode == 0, proc.stderr          # the preamble itself passes


def _cli(*args):
    proc = subprocess.run([str(SAVED_MODEL_CLI), *args], capture_output=True, text=True, timeout=600,
                          env={**os.environ, **QUIET})
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout


def test_saved_model_cli_shows_the_signatures_and_runs_a_real_digit(abs_export, small_abs, digits, tmp_path):
    shown = _cli("show", "--dir", str(abs_export), "--all")
    for name in ("serving_default", "classify_uint8", "explain", "config"):
        assert f"signature_def['{name}']" in shown
    for output in ("probabilities", "logits", "classes", "certified_l2", "reconstructions"):
        assert f"outputs['{output}']" in shown
    x, labels = digits
    right = int(np.flatnonzero(small_abs(x).numpy().argmax(1) == labels)[0])    # a digit it gets right
    np.save(tmp_path / "x.npy", x[right:right + 1])
    _cli("run", "--dir", str(abs_export), "--tag_set", "serve", "--signature_def", "serving_default",
         "--inputs", f"images={tmp_path / 'x.npy'}", "--outdir", str(tmp_path / "out"))
    assert np.load(tmp_path / "out" / "classes.npy").tolist() == [labels[right]]
