"""How far an evaluation's distal adversarials lie from the data: noise, or digits?

A distal adversarial that reaches high confidence may still be a fair answer if it looks like a
digit of its target class. This measures, per model, the median L2 distance (pixel units) of its
distal images (`abs_tf.evaluation.distal`) to the nearest MNIST training image, beside the same
figure for test images (digits) as a yardstick:

  python scripts/distal_distance_to_data.py --output_dir=results/table1 --num_test_images=100

Figures of `results/table1` (2026-11-28, commit `e5da4b5`): test images 4.2; ABS 6.7; CNN, both
binary CNNs, Madry 14.4–16.1 (noise); rows added later that day: the release's ABS (`abs_official`)
7.2, stage 7 (`abs_stage7`, commit `04815bf`) 6.8.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
from absl import app, flags

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

FLAGS = flags.FLAGS


def define_flags():
    flags.DEFINE_string("output_dir", "results/table1", "An evaluation directory with distal adversarials.")
    flags.DEFINE_integer("num_test_images", 100, "Test images for the yardstick (the first ones).")


def distances_to_data(nearest_neighbor, images) -> np.ndarray:
    """float [N]: L2 distance of each image [N, 28, 28, 1] to its nearest training image
    (the nearest-neighbour model's logits are minus the per-class distances)."""
    return -np.asarray(nearest_neighbor(np.asarray(images, np.float32))).max(axis=1)


def main(argv):
    del argv
    from abs_tf import data, registry
    from abs_tf.evaluation import distal

    nn = registry.load_model("nearest_neighbor")
    test, _ = data.load_mnist("test")
    out = {"test images": float(np.median(distances_to_data(nn, test[:FLAGS.num_test_images])))}
    for model in sorted(distal.read_rows(FLAGS.output_dir)):
        out[model] = float(np.median(distances_to_data(nn, distal.load(FLAGS.output_dir, model)["images"])))
    print(json.dumps({"median L2 to the nearest training image": out}, indent=2))


if __name__ == "__main__":
    define_flags()
    app.run(main)
