"""Compares sets of ABS VAEs quickly: errors on a fixed set of hard test images.

A full 10000-image ABS evaluation takes ~10 minutes here; candidate VAEs differ only on images
whose true class barely wins. This script builds that set from earlier full evaluations
(`evaluate.py`'s per_image.npz: every image whose best-wrong/own class-loss ratio is below
--ratio in any of them) and counts each candidate's errors on it with the full search.
Optionally it also reports the sample-selection-only accuracy (n_steps=1) on all test images.

  python scripts/compare_vaes_on_hard_images.py \\
      --hard_from=out/abs_10000/per_image.npz --weights=weights/abs_vae,runs/candidate,official

``official`` names the release's VAEs (ABS.from_official, sign-preserving projection here so
that only the VAEs differ). A candidate beats another only if it has fewer errors on the set;
errors outside the set are not counted, so confirm a winner with a full evaluate.py run.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from absl import app, flags

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from abs_tf.paths import reference_dir  # noqa: E402  (after the path insert)

FLAGS = flags.FLAGS


def define_flags():
    """Only when run as a script, so that tests can import `hard_indices` next to other absl programs."""
    flags.DEFINE_list("weights", None, "VAE weight directories to compare, or 'official'.", required=True)
    flags.DEFINE_list("hard_from", None, "per_image.npz files of full ABS evaluations.", required=True)
    flags.DEFINE_float("ratio", 1.25, "An image is hard if best-wrong / own class loss < this in any run.")
    flags.DEFINE_integer("n_samples", 8000, "Latent samples of our VAEs (the official ones bring their own 8000).")
    flags.DEFINE_integer("n_steps", 50, "Search iterations.")
    flags.DEFINE_integer("batch_size", 128, "Images per call.")
    flags.DEFINE_boolean("selection_accuracy", False, "Also report the accuracy of sample selection only "
                         "(n_steps=1) on all test images.")
    flags.DEFINE_string("official_dir", str(reference_dir()), "The release's reference directory "
                        "(default: $ABS_TF_REFERENCE_DIR, else ../shared/reference/abs_official).")
    flags.DEFINE_string("data_dir", None, "MNIST IDX directory (default: $ABS_TF_DATA_DIR, else the Keras download).")


def hard_indices(paths, ratio):
    """Test-set indices whose true class wins by less than ``ratio`` (loss ratio) in any run."""
    import numpy as np

    from abs_tf.training.margin import loss_ratios

    hard = set()
    for path in paths:
        with np.load(path) as run:
            losses, labels, indices = -run["logits"], run["labels"], run["indices"]
        hard |= set(indices[loss_ratios(losses, labels) < ratio].tolist())
    return np.array(sorted(hard), np.int64)


def build(weights, n_steps):
    from abs_tf.models.abs.model import ABS

    if weights == "official":
        return ABS.from_official_dir(FLAGS.official_dir, n_steps=n_steps, projection="norm",
                                     max_batch=FLAGS.batch_size)
    return ABS.from_weights(weights, n_samples=FLAGS.n_samples, n_steps=n_steps, max_batch=FLAGS.batch_size)


def main(argv):
    del argv
    import numpy as np

    from abs_tf import data

    images, labels = data.load_mnist("test", FLAGS.data_dir)
    idx = hard_indices(FLAGS.hard_from, FLAGS.ratio)
    print(f"{len(idx)} hard images (ratio < {FLAGS.ratio} in any of {len(FLAGS.hard_from)} runs)")
    for weights in FLAGS.weights:
        start = time.time()
        logits = build(weights, FLAGS.n_steps)(images[idx]).numpy()
        wrong = idx[logits.argmax(1) != labels[idx]]
        result = {"weights": weights, "hard_images": len(idx), "errors": len(wrong),
                  "seconds": round(time.time() - start, 1)}
        if FLAGS.selection_accuracy:
            selection = build(weights, 1)
            predictions = np.concatenate([selection(images[i:i + 500]).numpy().argmax(1)
                                          for i in range(0, len(images), 500)])
            result["selection_only_accuracy"] = float(np.mean(predictions == labels))
        print(json.dumps(result), flush=True)


if __name__ == "__main__":
    define_flags()
    app.run(main)
