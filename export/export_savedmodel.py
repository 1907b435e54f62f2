"""Exports a model of abs-tf as a versioned SavedModel: <export_dir>/<name>/<version>/.

  python export/export_savedmodel.py --model=cnn --export_dir=exports
  python export/export_savedmodel.py --model=abs --export_dir=exports --version=1

The SavedModel has a `serving_default` signature (TF Serving's default):
  input  `images`: float32 [B, 28, 28, 1] in [0, 1]
  output `logits` float32 [B, 10], `probabilities` float32 [B, 10] (ABS: the calibrated
         scaled softmax with offset; others: softmax), `classes` int64 [B].
Any TF program loads it without this repository: `tf.saved_model.load(path)`.
"""

from __future__ import annotations

import os
from pathlib import Path

os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")

from absl import app, flags

FLAGS = flags.FLAGS
flags.DEFINE_string("model", "cnn", "Registered model name (see abs_tf/registry.py).")
flags.DEFINE_string("weights", None, "Weights directory (default: the model's shipped weights).")
flags.DEFINE_string("export_dir", "exports", "Root of the versioned export tree.")
flags.DEFINE_integer("version", None, "Version folder (default: one more than the highest present).")


def build_serving_module(model, calibrated: bool):
    import tensorflow as tf

    class Serving(tf.Module):
        def __init__(self):
            super().__init__(name="serving")
            self.model = model

        @tf.function(input_signature=[tf.TensorSpec([None, 28, 28, 1], tf.float32, name="images")])
        def serving_default(self, images):
            logits = self.model(images)
            if calibrated:
                from abs_tf.models.abs.model import confidence_softmax
                probabilities = confidence_softmax(logits)
            else:
                probabilities = tf.nn.softmax(logits)
            return {"logits": logits, "probabilities": probabilities, "classes": tf.argmax(logits, -1)}

    return Serving()


def next_version(root: Path) -> int:
    versions = [int(p.name) for p in root.glob("*") if p.is_dir() and p.name.isdigit()]
    return max(versions, default=0) + 1


def export(model, name: str, export_dir, version=None, calibrated: bool = False) -> Path:
    """Saves `model` (images -> logits) to <export_dir>/<name>/<version>/ and returns the path."""
    import tensorflow as tf

    root = Path(export_dir) / name
    root.mkdir(parents=True, exist_ok=True)
    version = next_version(root) if version is None else int(version)
    path = root / str(version)
    if path.exists():
        raise FileExistsError(f"{path} exists; exports are immutable, choose another --version")
    if getattr(model, "xla_kernels", False):
        # TF Serving runs with XLA:CPU JIT off by default: export a graph without XLA ops.
        model = model.variant(xla_kernels=False)
    module = build_serving_module(model, calibrated)
    tf.saved_model.save(module, str(path), signatures={"serving_default": module.serving_default})
    return path


def main(argv):
    del argv
    from abs_tf import registry

    model = registry.load_model(FLAGS.model, FLAGS.weights)
    path = export(model, FLAGS.model, FLAGS.export_dir, FLAGS.version, calibrated="abs" in FLAGS.model)
    print(f"exported {FLAGS.model} to {path}")
    print(f"inspect: saved_model_cli show --dir {path} --all")


if __name__ == "__main__":
    app.run(main)
