"""Exports a model of abs-tf as a versioned SavedModel: <export_dir>/<name>/<version>/.

  python export/export_savedmodel.py --model=cnn --export_dir=exports
  python export/export_savedmodel.py --model=abs --export_dir=exports --version=1

The SavedModel has a `serving_default` signature (TF Serving's default):
  input  `images`: float32 [B, 28, 28, 1] in [0, 1]
  output `logits` float32 [B, 10], `probabilities` float32 [B, 10] (the model's calibrated
         probabilities where its registry entry offers them (ABS: scaled softmax with offset),
         else the softmax), `classes` int64 [B].
The signature is traced for any shape, so that the model's own run-time check refuses a wrong
one with a message naming it (``images must have shape [B, 28, 28, 1], got [2, 28, 28, 4]``,
an InvalidArgumentError) instead of TF reading extra channels as a grouped convolution.
The exported variant is the one the registry names for export (ABS: without XLA kernels, as TF
Serving keeps XLA:CPU JIT off by default). Any TF program loads it without this repository:
`tf.saved_model.load(path)`.
"""

from __future__ import annotations

import sys
from pathlib import Path

from absl import app, flags

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))   # run as a script from anywhere

from abs_tf import registry  # noqa: E402  (first, so that its TensorFlow settings take effect)

FLAGS = flags.FLAGS


def define_flags():
    """Only when run as a script, so that tests can import this module next to other absl programs."""
    flags.DEFINE_string("model", "cnn", "Registered model name (see abs_tf/registry.py).")
    flags.DEFINE_string("weights", None, "Weights directory (default: the model's shipped weights).")
    flags.DEFINE_string("export_dir", "exports", "Root of the versioned export tree.")
    flags.DEFINE_integer("version", None, "Version folder (default: one more than the highest present).")
    flags.register_validator("model", lambda v: v in registry.names(),
                             f"--model must be one of the registered models: {', '.join(registry.names())}")
    flags.register_validator("version", lambda v: v is None or v >= 1, "--version must be >= 1")


def build_serving_module(model, probabilities):
    """A `tf.Module` with the `serving_default` function; ``probabilities``: logits -> [B,10]."""
    import tensorflow as tf

    class Serving(tf.Module):
        def __init__(self):
            super().__init__(name="serving")
            self.model = model

        # Any shape: the model checks [B, 28, 28, 1] in the graph, naming the shape it got.
        @tf.function(input_signature=[tf.TensorSpec([None, None, None, None], tf.float32, name="images")])
        def serving_default(self, images):
            logits = self.model(images)
            return {"logits": logits, "probabilities": probabilities(logits), "classes": tf.argmax(logits, -1)}

    return Serving()


def next_version(root: Path) -> int:
    versions = [int(p.name) for p in root.glob("*") if p.is_dir() and p.name.isdigit()]
    return max(versions, default=0) + 1


def export(model, name: str, export_dir, version=None, probabilities=None) -> Path:
    """Saves ``model`` (images -> logits) to <export_dir>/<name>/<version>/ and returns the path.

    probabilities: logits -> probabilities for the signature (default: softmax)."""
    import tensorflow as tf

    root = Path(export_dir) / name
    root.mkdir(parents=True, exist_ok=True)
    version = next_version(root) if version is None else int(version)
    path = root / str(version)
    if path.exists():
        raise FileExistsError(f"{path} exists; exports are immutable, choose another --version")
    module = build_serving_module(model, probabilities or tf.nn.softmax)
    tf.saved_model.save(module, str(path), signatures={"serving_default": module.serving_default})
    return path


def export_registered(name: str, export_dir, weights_dir=None, version=None, **options) -> Path:
    """Loads the registered model ``name`` in its export variant (``ModelSpec.export_options``,
    plus ``options``) and exports it with the probabilities its entry offers."""
    spec = registry.get_spec(name)
    model = registry.load_model(name, weights_dir, **{**options, **spec.export_options})
    return export(model, name, export_dir, version, probabilities=spec.probabilities)


def main(argv):
    del argv
    path = export_registered(FLAGS.model, FLAGS.export_dir, FLAGS.weights, FLAGS.version)
    print(f"exported {FLAGS.model} to {path}")
    print(f"inspect: saved_model_cli show --dir {path} --all")


if __name__ == "__main__":
    define_flags()
    app.run(main)
