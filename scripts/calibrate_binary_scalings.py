"""Calibrates Binary ABS's per-class loss scalings for a set of VAEs, on training images.

The release's Binary ABS multiplies the class losses by scalings calibrated for its own VAEs
(SPEC §1). This script computes Binary ABS's unscaled class losses (full search) on a seeded
random subset of the MNIST *training* images, fits the scalings that maximise accuracy there
(`abs_tf.models.abs.calibration.fit_class_scalings`), compares that fit with all-ones and the release's
scalings by 5-fold held-out accuracy (`choose_scalings`) and writes the winner to
``<weights>/binary_scalings.json``, which ``ABS.from_weights(..., binary=True)`` then uses.
No test image is looked at.

  python scripts/calibrate_binary_scalings.py --weights=weights/abs_vae --num_images=10000

With ``--losses_file`` the computed losses are kept, so that a re-run only refits.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from absl import app, flags

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

FLAGS = flags.FLAGS


def define_flags():
    """Only when run as a script (tests import this module next to other absl programs)."""
    flags.DEFINE_string("weights", "weights/abs_vae", "Directory of the ten VAE weight files.")
    flags.DEFINE_integer("num_images", 10000, "Training images used for the calibration (random, seeded).")
    flags.DEFINE_integer("seed", 0, "Seed of the training-image subset and of the cross-validation folds.")
    flags.DEFINE_integer("folds", 5, "Cross-validation folds for choosing between the fit and the fixed candidates.")
    flags.DEFINE_integer("batch_size", 128, "Images per ABS call.")
    flags.DEFINE_integer("n_samples", 8000, "Latent samples of the search.")
    flags.DEFINE_integer("n_steps", 50, "Search iterations.")
    flags.DEFINE_string("output", None, "Scalings JSON (default: <weights>/binary_scalings.json).")
    flags.DEFINE_string("losses_file", None, "Optional cache (.npz) of the computed losses: written after the "
                        "search, reused by a later run with the same weights, subset and search flags.")
    flags.DEFINE_string("data_dir", None, "MNIST IDX directory (default: $ABS_TF_DATA_DIR, else the Keras download).")
    for name in ("num_images", "batch_size", "n_samples", "n_steps"):
        flags.register_validator(name, lambda v: v >= 1, f"--{name} must be >= 1")
    flags.register_validator("folds", lambda v: v >= 2, "--folds must be >= 2")


def calibration_subset(num_labels: int, num_images: int, seed: int):
    """Sorted indices of ``num_images`` distinct training images, drawn with ``seed``."""
    import numpy as np

    if not 0 < num_images <= num_labels:
        raise ValueError(f"num_images must be in 1..{num_labels}, got {num_images}")
    return np.sort(np.random.default_rng(seed).choice(num_labels, num_images, replace=False))


def binary_losses(model, images, batch_size):
    """Unscaled Binary ABS class losses [N,10] of images [N,28,28,1], with a progress bar."""
    import keras
    import numpy as np

    bar = keras.utils.Progbar(len(images), unit_name="image")
    chunks = []
    for i in range(0, len(images), batch_size):
        chunks.append(model.search(images[i:i + batch_size])["losses"].numpy())
        bar.add(len(chunks[-1]))
    return np.concatenate(chunks)


def main(argv):
    del argv
    import numpy as np

    from abs_tf import data
    from abs_tf.models.abs import calibration
    from abs_tf.models.abs.model import ABS, BINARY_SCALINGS

    weights = Path(FLAGS.weights)
    output = Path(FLAGS.output) if FLAGS.output else weights / calibration.SCALINGS_FILE
    losses_file = Path(FLAGS.losses_file) if FLAGS.losses_file else None
    images, labels = data.load_mnist("train", FLAGS.data_dir)
    idx = calibration_subset(len(labels), FLAGS.num_images, FLAGS.seed)
    key = dict(weights=str(weights), num_images=FLAGS.num_images, seed=FLAGS.seed,
               n_samples=FLAGS.n_samples, n_steps=FLAGS.n_steps)

    losses = None
    if losses_file is not None and losses_file.is_file():
        with np.load(losses_file) as cached:
            if json.loads(str(cached["key"])) == key:
                losses = cached["losses"]
                print(f"reusing losses from {losses_file}")
    if losses is None:
        start = time.time()
        model = ABS.from_weights(weights, binary=True, binary_scalings=np.ones(10), n_samples=FLAGS.n_samples,
                                 n_steps=FLAGS.n_steps, max_batch=FLAGS.batch_size)
        losses = binary_losses(model, images[idx], FLAGS.batch_size)
        print(f"losses of {len(idx)} training images in {time.time() - start:.0f} s")
        if losses_file is not None:
            np.savez(losses_file, losses=losses, indices=idx, key=json.dumps(key))

    y = labels[idx]
    fixed = {"ones": np.ones(10), "release": BINARY_SCALINGS}
    chosen = calibration.choose_scalings(losses, y, fixed, folds=FLAGS.folds, seed=FLAGS.seed)
    fitted = chosen["fitted"]
    record = dict(
        choice=chosen["choice"],
        calibrated_on=f"{len(idx)} MNIST training images (random subset, seed {FLAGS.seed})", **key,
        held_out_accuracy={"folds": FLAGS.folds, **chosen["held_out_accuracy"]},
        fitted_on_all=fitted.tolist(),
        training_subset_accuracy={name: calibration.scaled_accuracy(losses, y, v)
                                  for name, v in [*fixed.items(), ("fitted", fitted)]},
        command="python scripts/calibrate_binary_scalings.py " + " ".join(sys.argv[1:]))
    calibration.save_scalings(output, chosen["scalings"], **record)
    print(json.dumps({"scalings": chosen["scalings"].tolist(), **record}, indent=2))


if __name__ == "__main__":
    define_flags()
    app.run(main)
