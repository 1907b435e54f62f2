"""Trains the models of abs-tf.

  python train.py --model=vae --out_dir=runs/abs_vae          # the ten class VAEs of ABS
  python train.py --model=vae --fine_tune=class_margin --init_from=runs/abs_vae --out_dir=runs/abs_margin
                                                              # their decoders fine-tuned with a class margin
  python train.py --model=cnn --out_dir=runs/cnn              # baselines (see weights/*/PROVENANCE.md)
  python train.py --model=binary_cnn --out_dir=runs/binary_cnn
  python train.py --model=substitute --seed=1 --out_dir=runs/substitute
  python train.py --model=madry --out_dir=runs/madry          # L-inf adversarial training (PGD-4)

`nearest_neighbor` needs no training. Run the same command again after an interruption: it
resumes from the last epoch checkpoint (finished VAE classes are skipped); a run directory
refuses a command whose training settings differ from those it was started with. TensorBoard
logs: <out_dir>/tb. Unset flags take the defaults of the model (abs_tf.training.config).

This driver only maps flags to a configuration of abs_tf.training.config and calls one entry of
abs_tf.training.run.
"""

from __future__ import annotations

import dataclasses
import sys
import time
from pathlib import Path

from absl import app, flags, logging

from abs_tf.training import config as cfg

FLAGS = flags.FLAGS
BASELINES = tuple(cfg.CLASSIFIER_DEFAULTS)


def _default(config_cls, field: str):
    return next(f.default for f in dataclasses.fields(config_cls) if f.name == field)


_VAE = cfg.VAETrainingConfig
_MARGIN = cfg.MarginFineTuneConfig
_BASELINE = cfg.ClassifierTrainingConfig

flags.DEFINE_enum("model", "vae", ("vae",) + BASELINES, "Which model to train.")
flags.DEFINE_enum("fine_tune", None, cfg.FINE_TUNE_PROCEDURES,
                  "--model=vae only: instead of training VAEs, fine-tune the trained VAEs in --init_from. "
                  "class_margin: their decoders, with a class margin at the latents of ABS's search "
                  "(abs_tf.training.margin; until commit ecf9aed spelled --model=abs_margin).")
flags.DEFINE_list("classes", [str(c) for c in _default(_VAE, "classes")],
                  "--model=vae: the digit classes whose VAEs to train.")
flags.DEFINE_integer("epochs", None, "Total number of training epochs (per class VAE). Default: per model "
                     f"(vae {_default(_VAE, 'epochs')}, class_margin {_default(_MARGIN, 'epochs')}, "
                     + ", ".join(f"{m} {d['epochs']}" for m, d in cfg.CLASSIFIER_DEFAULTS.items()) + ").")
flags.DEFINE_integer("batch_size", None, f"Mini-batch size. Default: vae {_default(_VAE, 'batch_size')}, "
                     f"class_margin {_default(_MARGIN, 'batch_size')}, baselines {_default(_BASELINE, 'batch_size')}.")
flags.DEFINE_float("learning_rate", None, f"Adam peak learning rate. Default: vae {_default(_VAE, 'learning_rate')}, "
                   f"class_margin {_default(_MARGIN, 'learning_rate')} (constant), baselines "
                   f"{_default(_BASELINE, 'learning_rate')}.")
flags.DEFINE_enum("schedule", None, cfg.SCHEDULES,
                  "Baselines: learning-rate schedule (cosine: decay to 5%; triangular: 0 -> peak at 40% -> 0). "
                  "Default: triangular for madry, cosine otherwise. The VAEs always use cosine.")
flags.DEFINE_boolean("augment", None, "Light random zoom/rotation/shift of a fraction of the training images "
                     "(default: on for the VAEs and cnn, off for the other baselines).")
flags.DEFINE_float("augment_probability", None, "--model=vae: fraction of training images that are augmented "
                   f"(default {_default(_VAE, 'augment_probability')}).")
flags.DEFINE_float("augment_max_shift", None, "--model=vae: largest random translation of the augmentation, "
                   f"pixels (default {_default(_VAE, 'augment_max_shift')}; 0: zoom and rotation only).")
flags.DEFINE_float("beta", None, f"--model=vae: weight of the KL term (default {_default(_VAE, 'beta')}, "
                   "as the original).")
flags.DEFINE_float("adv_eps", None,
                   f"madry: L-inf radius of adversarial training (default {_default(_BASELINE, 'adv_eps')}).")
flags.DEFINE_float("adv_step_size", None, f"madry: PGD step (default {_default(_BASELINE, 'adv_step_size')}).")
flags.DEFINE_integer("adv_steps", None, f"madry: PGD steps per training batch (default "
                     f"{_default(_BASELINE, 'adv_steps')}; the MNIST challenge used 40 steps of 0.01, 4 of 0.1 fit "
                     "a CPU budget).")
flags.DEFINE_float("margin_alpha", None, "class_margin: sharpness of the soft class margin, 1 / (per-pixel loss "
                   f"units) (default {_default(_MARGIN, 'margin_alpha')}).")
flags.DEFINE_float("margin_pool_ratio", None, "class_margin: train on images whose best wrong class's loss is "
                   f"within this factor of the true class's (default {_default(_MARGIN, 'margin_pool_ratio')}).")
flags.DEFINE_integer("margin_search_samples", None, "class_margin: latent samples of the training-time search "
                     f"(default {_default(_MARGIN, 'margin_search_samples')}).")
flags.DEFINE_integer("margin_search_steps", None, "class_margin: iterations of the training-time search "
                     f"(default {_default(_MARGIN, 'margin_search_steps')}).")
flags.DEFINE_integer("margin_refresh", None, "class_margin: rebuild the search model from the current decoders "
                     f"every this-many updates (default {_default(_MARGIN, 'margin_refresh')}).")
flags.DEFINE_integer("train_images", None, "Train on the first this-many training images only (default 0: all "
                     "60000; for smoke tests).")
flags.DEFINE_string("init_from", None,
                    "Start from trained weights (fine-tuning): for the VAEs a directory of vae_<c>.weights.h5, "
                    "for the baselines a .weights.h5 file or a weights/<model> directory. A checkpoint in "
                    "--out_dir (resume) takes precedence.")
flags.DEFINE_integer("seed", None, "Random seed (default 0); a fixed seed gives identical weights.")
flags.DEFINE_string("data_dir", None,
                    "Directory of MNIST IDX files (default: $ABS_TF_DATA_DIR, else the Keras download).")
flags.DEFINE_string("out_dir", None, "Run directory: checkpoints, TensorBoard logs (tb/), final weights. "
                    "Default: runs/abs_vae for the VAEs, runs/abs_margin for --fine_tune, runs/<model> otherwise.")
flags.DEFINE_integer("verbose", 1, "1: progress bar per epoch; 0: quiet.", lower_bound=0, upper_bound=1)

# Which flags each procedure reads (beyond model, seed, data_dir, out_dir, verbose).
USES = {
    "vae": ("classes", "epochs", "batch_size", "learning_rate", "beta", "augment", "augment_probability",
            "augment_max_shift", "train_images", "init_from"),
    "class_margin": ("epochs", "batch_size", "learning_rate", "margin_alpha", "margin_pool_ratio",
                     "margin_search_samples", "margin_search_steps", "margin_refresh", "train_images", "init_from"),
    "baseline": ("epochs", "batch_size", "learning_rate", "schedule", "augment", "train_images", "init_from"),
    "madry": ("adv_eps", "adv_step_size", "adv_steps"),
}

# The allowed values of every numeric flag are those of the configuration (one statement, cfg.RANGES).
for _name, _range in cfg.RANGES.items():
    if _name in FLAGS:
        flags.register_validator(_name, lambda v, r=_range: v is None or r.contains(v),
                                 f"--{_name} must be {_range.describe()}")
flags.register_validator("classes", lambda v: cfg.classes_problem(v) is None,
                         "--classes must be distinct digits 0..9, at least one (e.g. --classes=0,1,2)")
flags.register_multi_flags_validator(
    ["model", "fine_tune", "init_from"],
    lambda f: f["fine_tune"] is None or (f["model"] == "vae" and f["init_from"] is not None),
    "--fine_tune=class_margin fine-tunes trained VAEs: pass --model=vae and --init_from=<directory of "
    "vae_{c}.weights.h5>")


def _procedure() -> str:
    if FLAGS.model == "vae":
        return "vae" if FLAGS.fine_tune is None else FLAGS.fine_tune
    return "baseline"


def _options(procedure: str) -> dict:
    """The flags the procedure reads, by name; refuses flags given that it does not read."""
    used = USES[procedure] + (USES["madry"] if FLAGS.model == "madry" else ()) + ("seed",)
    unused = [f"--{name}" for names in USES.values() for name in names if name not in used and FLAGS[name].present]
    if unused:
        what = f"--model={FLAGS.model}" + (f" --fine_tune={FLAGS.fine_tune}" if FLAGS.fine_tune else "")
        unused = sorted(set(unused))
        raise app.UsageError(f"{', '.join(unused)} {'does' if len(unused) == 1 else 'do'} not apply to {what}")
    return {name: FLAGS[name].value for name in used}


def _config(procedure: str):
    options = _options(procedure)
    try:
        if procedure == "vae":
            return cfg.build(cfg.VAETrainingConfig, **dict(options, classes=tuple(int(c) for c in FLAGS.classes)))
        if procedure == "class_margin":
            return cfg.build(cfg.MarginFineTuneConfig, **options)
        return cfg.classifier_config(FLAGS.model, **options)
    except cfg.ConfigValueError as e:  # a combination of values the flag validators cannot see
        raise app.UsageError(f"--{e.field} {e.problem}") from e


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    procedure = _procedure()
    config = _config(procedure)
    # After the flags are checked: importing TensorFlow takes seconds.
    from abs_tf.models.weights_identity import WeightsIdentityError
    from abs_tf.training import run
    from abs_tf.training.run_dir import ConfigMismatchError

    entry = {"vae": run.train_vae_run, "class_margin": run.fine_tune_margin_run,
             "baseline": run.train_classifier_run}[procedure]
    out_dir = Path(FLAGS.out_dir or run.default_out_dir(FLAGS.model, FLAGS.fine_tune))
    start = time.time()
    try:
        entry(config, out_dir, FLAGS.data_dir, command=" ".join([Path(sys.executable).name, *sys.argv]),
              verbose=FLAGS.verbose)
    except (ConfigMismatchError, WeightsIdentityError, FileNotFoundError) as e:
        sys.exit(f"train.py: {e}")
    logging.info("done in %.0f s; summary in %s", time.time() - start, out_dir / "summary.json")


if __name__ == "__main__":
    app.run(main)
