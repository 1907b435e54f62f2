"""Exports a registered model as a versioned SavedModel: <export_base>/<model>/<version>/.

  python export/export_savedmodel.py --model=abs --export_base=/srv/models --version=1
  saved_model_cli show --dir /srv/models/abs/1 --all

Signatures: serving_default (float32 images [B,28,28,1] in [0,1]), classify_uint8 (uint8
[B,28,28]), explain (ABS models), config; see abs_tf/export/signatures.py and README's Export
section. The default export has no XLA-compiled function (TF Serving's CPU JIT is off by
default); --xla exports the compiled variant. A version is written completely or not at all
and never overwritten. Any TF program loads the export without abs-tf:
``tf.saved_model.load(path).signatures["serving_default"](images=x)``.
"""

from __future__ import annotations

import sys
from pathlib import Path

from absl import app, flags, logging

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))   # run as a script from anywhere

from abs_tf import registry  # noqa: E402  (first, so that its TensorFlow settings take effect)

FLAGS = flags.FLAGS
# ABS search flags, passed only when given (the model's defaults otherwise; see ModelSpec.search_options).
SEARCH_FLAGS = ("n_samples", "n_steps", "projection", "seed")


def define_flags():
    """Only when run as a script, so that tests can import this module next to other absl programs."""
    flags.DEFINE_enum("model", None, registry.names(), "Registered model to export (abs_tf/registry.py).")
    flags.DEFINE_string("weights", None, "Weights directory (default: the model's shipped weights).")
    flags.DEFINE_string("export_base", "exports", "Root of the versioned tree (TF Serving's model base path "
                        "is <export_base>/<model>).")
    flags.DEFINE_integer("version", None, "Version folder, an integer >= 1 (default: one more than the highest "
                         "present). An existing version is never overwritten.", lower_bound=1)
    flags.DEFINE_boolean("xla", False, "Export the XLA-compiled variant (ABS: the XLA kernels of its search; the "
                         "others: compiled as a whole). Needs XLA where it is served.")
    flags.DEFINE_boolean("store_decoded_samples", False, "ABS: store the ~240 MB of decoded samples in the "
                         "SavedModel instead of decoding them when it loads.")
    flags.DEFINE_integer("n_samples", None, "ABS: fixed latent samples (default 8000; the release's models have "
                         "their own).", lower_bound=1)
    flags.DEFINE_integer("n_steps", None, "ABS: search iterations (default 50).", lower_bound=1)
    flags.DEFINE_enum("projection", None, ["original", "norm"], "ABS: projection onto the latent ball.")
    flags.DEFINE_integer("seed", None, "ABS: seed of the latent samples (default 1234).", lower_bound=0)
    flags.mark_flag_as_required("model")


def config_from_flags():
    from abs_tf.export.savedmodel import ExportConfig
    from abs_tf.run_info import git_commit

    options = {name: FLAGS[name].value for name in SEARCH_FLAGS if FLAGS[name].present}
    return ExportConfig(model=FLAGS.model, export_base=FLAGS.export_base, version=FLAGS.version,
                        weights=FLAGS.weights, xla=FLAGS.xla, store_decoded_samples=FLAGS.store_decoded_samples,
                        options=options, provenance={"abs_tf_commit": git_commit()})


def main(argv):
    del argv
    logging.set_verbosity(logging.WARNING)        # TensorFlow's save logs each file at INFO
    from abs_tf.export import writer
    from abs_tf.export.savedmodel import export_registered

    config = config_from_flags()
    try:
        path = export_registered(config)
    except (FileExistsError, TypeError, ValueError, FileNotFoundError, NotADirectoryError) as e:
        sys.exit(f"export_savedmodel.py: {type(e).__name__}: {e}")
    print(f"exported {config.model} to {path}")
    print(f"inspect: saved_model_cli show --dir {path} --all")
    for stale in writer.stale_staging_folders(path.parent):
        print(f"note: {stale} is left from an export that did not finish; delete it when no export is running")


if __name__ == "__main__":
    define_flags()
    app.run(main)
