"""Trains the models of abs-tf.

  python train.py --model=vae --out_dir=runs/abs_vae          # the ten class VAEs of ABS

Run the same command again after an interruption: finished classes are skipped and the
running one resumes from its last epoch checkpoint. TensorBoard logs: <out_dir>/tb.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

from absl import app, flags, logging

FLAGS = flags.FLAGS
MODELS = ("vae",)

flags.DEFINE_enum("model", "vae", MODELS, "Which model to train.")
flags.DEFINE_list("classes", [str(c) for c in range(10)], "VAE only: the digit classes whose VAEs to train.")
flags.DEFINE_integer("epochs", 30, "Total number of training epochs (per class VAE).")
flags.DEFINE_integer("batch_size", 64, "Mini-batch size.")
flags.DEFINE_float("learning_rate", 2e-3, "Adam peak learning rate (cosine decay to 5% of it over the run).")
flags.DEFINE_float("beta", 1.0, "VAE only: weight of the KL term (the original used 1).")
flags.DEFINE_boolean("augment", True, "VAE only: light random zoom/rotation/shift on 30% of training images.")
flags.DEFINE_integer("seed", 0, "Random seed; a fixed seed gives identical weights.")
flags.DEFINE_string("data_dir", None, "Directory of MNIST IDX files (default: $ABS_TF_DATA_DIR, else the Keras download).")
flags.DEFINE_string("out_dir", "runs/abs_vae", "Run directory: checkpoints, TensorBoard logs (tb/), final weights.")
flags.DEFINE_integer("verbose", 1, "1: progress bar per epoch; 0: quiet.")


def _validate_classes(values):
    try:
        return all(0 <= int(v) <= 9 for v in values) and len(set(values)) == len(values)
    except ValueError:
        return False


flags.register_validator("classes", _validate_classes, "--classes must be distinct digits 0..9")
flags.register_validator("epochs", lambda v: v >= 1, "--epochs must be >= 1")
flags.register_validator("batch_size", lambda v: v >= 1, "--batch_size must be >= 1")
flags.register_validator("learning_rate", lambda v: v > 0, "--learning_rate must be > 0")


def _git_commit():
    try:
        return subprocess.check_output(["git", "rev-parse", "HEAD"], cwd=Path(__file__).parent,
                                       stderr=subprocess.DEVNULL, text=True).strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def train_vaes(out_dir: Path):
    from abs_tf import data, training, vae_training

    train_x, train_y = data.load_mnist("train", FLAGS.data_dir)
    test_x, test_y = data.load_mnist("test", FLAGS.data_dir)
    results = {}
    for c in (int(v) for v in FLAGS.classes):
        done = out_dir / f"vae_{c}.json"
        if (done.is_file() and (out_dir / vae_training.WEIGHTS_PATTERN.format(c)).is_file()
                and json.loads(done.read_text()).get("epochs") == FLAGS.epochs):
            results[c] = json.loads(done.read_text())
            logging.info("class %d already trained (%s); skipping", c, done)
            continue
        logging.info("training VAE for class %d on %d images", c, int((train_y == c).sum()))
        training.set_global_determinism(FLAGS.seed * 100 + c)
        _, metrics = vae_training.train_class_vae(
            train_x[train_y == c], test_x[test_y == c], class_id=c, out_dir=out_dir,
            epochs=FLAGS.epochs, batch_size=FLAGS.batch_size, learning_rate=FLAGS.learning_rate,
            beta=FLAGS.beta, seed=FLAGS.seed, augment=FLAGS.augment, verbose=FLAGS.verbose)
        results[c] = metrics
        logging.info("class %d: test loss %.5f, reconstruction MSE %.5f, %.0f s", c, metrics["loss"],
                     metrics["reconstruction_mse"], metrics["wall_time_s"])
    return results


def main(argv):
    del argv
    out_dir = Path(FLAGS.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    config = {k: FLAGS[k].value for k in ("model", "classes", "epochs", "batch_size", "learning_rate",
                                           "beta", "augment", "seed", "data_dir", "out_dir")}
    config.update(command=" ".join([Path(sys.executable).name, *sys.argv]), git_commit=_git_commit())
    (out_dir / "config.json").write_text(json.dumps(config, indent=2))
    start = time.time()
    if FLAGS.model == "vae":
        results = train_vaes(out_dir)
    summary = {"config": config, "wall_time_s_this_invocation": time.time() - start, "results": results}
    (out_dir / "summary.json").write_text(json.dumps(summary, indent=2))
    logging.info("done in %.0f s; summary in %s", time.time() - start, out_dir / "summary.json")


if __name__ == "__main__":
    app.run(main)
