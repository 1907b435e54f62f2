"""How far an evaluation's distal adversarials lie from the data: noise, or digits?

A distal adversarial that reaches high confidence may still be a fair answer if it looks like a
digit of its target class. This measures, per model, the median L2 distance (pixel units) of its
distal images (`abs_tf.evaluation.distal`) to the nearest MNIST training image, beside the same
figure for test images (digits) as a yardstick:

  python scripts/distal_distance_to_data.py --output_dir=results/table1 --num_test_images=100

Figures of `results/table1` (2026-11-28, commit `e5da4b5`): test images 4.2; ABS 6.7; CNN, both
binary CNNs, Madry 14.4–16.1 (noise); rows added later that day: the release's ABS (`abs_official`)
7.2, stage 7 (`abs_stage7`, commit `04815bf`) 6.8.

A second yardstick says what the threshold means for each model: the fraction of the same test
images whose calibrated probability of their own label reaches it (a model that rarely gives real
digits 0.9 cannot be expected to give it to noise). On the first 100 test images (2026-11-28,
commit `842ea4f`): see docs/experiments.md, "Distal adversarials of Binary ABS".
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


def clean_confidence(model, images, labels, threshold) -> dict:
    """The calibrated probability `model` gives test ``images`` [N, 28, 28, 1] of their
    ``labels`` [N] (as the distal search measures it): its median, and the fraction >= threshold."""
    from abs_tf.attacks.decision.distal import calibration

    p = np.asarray(calibration(model)(model(images)))[np.arange(len(labels)), labels]
    return {"median p": float(np.median(p)), f"p >= {threshold:g}": float(np.mean(p >= threshold))}


def main(argv):
    del argv
    from abs_tf import data, registry
    from abs_tf.evaluation import distal

    nn = registry.load_model("nearest_neighbor")
    test, labels = data.load_mnist("test")
    test, labels = test[:FLAGS.num_test_images], labels[:FLAGS.num_test_images]
    out = {"test images": float(np.median(distances_to_data(nn, test)))}
    confidence = {}
    for model, row in sorted(distal.read_rows(FLAGS.output_dir).items()):
        out[model] = float(np.median(distances_to_data(nn, distal.load(FLAGS.output_dir, model)["images"])))
        confidence[model] = clean_confidence(registry.load_model(model), test, labels, float(row["threshold"]))
    print(json.dumps({"median L2 to the nearest training image": out,
                      "test images' calibrated probability of their label": confidence}, indent=2))


if __name__ == "__main__":
    define_flags()
    app.run(main)
