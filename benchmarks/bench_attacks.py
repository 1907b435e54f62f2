"""Throughput of the decision-based attacks (queries per second) on registry models.

  python benchmarks/bench_attacks.py --models=cnn,abs --num_images=4 --max_queries=200

For each model and attack: one warm-up call on one image (traces the model's compiled
functions), then the timed call on ``num_images`` test images. Reported per attack: queries
(model evaluations of one image, the base class's clean check and verification included),
queries/s, seconds per image, verified success and the median distance in the attack's norm.
Budgets are small on purpose (``--max_queries`` per image for the attacks that take one; one
repetition for the noise attacks; ``--distal_steps`` for distal adversarials): the figure is
the rate, not the attack's strength. ABS runs its full search (8000 samples, 50 steps) unless
``--abs_n_steps`` says otherwise; its queries are batched up to ``--max_batch`` images per call.
Numbers are only comparable within one run (shared machines are noisy).
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from absl import app, flags

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))   # run as a script from anywhere

from abs_tf import data, registry  # noqa: E402  (abs_tf before TensorFlow: its oneDNN setting)

FLAGS = flags.FLAGS

ATTACK_NAMES = ("salt_and_pepper", "pointwise", "boundary", "gaussian_noise", "uniform_noise", "latent_descent",
                "distal")
flags.DEFINE_list("models", ["cnn", "abs"], "Registry model names.")
flags.DEFINE_list("attacks", list(ATTACK_NAMES), f"Attacks to time, of {ATTACK_NAMES} (latent_descent: ABS only).")
flags.DEFINE_integer("num_images", 4, "Test images attacked (the first ones the model classifies correctly).")
flags.DEFINE_integer("max_queries", 200, "Per-image query budget of the attacks that take one.", lower_bound=10)
flags.DEFINE_integer("max_batch", 256, "Most images per model call.", lower_bound=1)
flags.DEFINE_integer("distal_steps", 20, "Momentum steps of the distal-adversarial search.", lower_bound=1)
flags.DEFINE_integer("abs_n_steps", None, "Override ABS's search iterations (default: the model's, 50).")
flags.DEFINE_integer("seed", 0, "Attack seed.")
flags.DEFINE_string("output", None, "Optional JSON file for the results.")


def make_attack(name: str):
    from abs_tf.attacks import decision

    q, b = FLAGS.max_queries, FLAGS.max_batch
    quick_start = decision.SaltAndPepper(steps=20, repetitions=1, max_batch=b)
    return {
        "salt_and_pepper": lambda: decision.SaltAndPepper(steps=20, repetitions=1, max_batch=b, max_queries=q),
        "pointwise": lambda: decision.Pointwise(init_attack=quick_start, max_batch=b, max_queries=q),
        "boundary": lambda: decision.Boundary(steps=q, max_queries=q, max_batch=b),
        "gaussian_noise": lambda: decision.AdditiveGaussianNoise(repetitions=1, max_batch=b),
        "uniform_noise": lambda: decision.AdditiveUniformNoise(repetitions=1, max_batch=b),
        "latent_descent": lambda: decision.LatentDescent(max_batch=b),
    }[name]()


def load(name: str):
    model = registry.load_model(name)
    if FLAGS.abs_n_steps and hasattr(model, "variant"):
        model = model.variant(n_steps=FLAGS.abs_n_steps)
    return model


def correct_images(model, count: int):
    import numpy as np

    images, labels = data.load_mnist("test")
    x, y = images[:4 * count], labels[:4 * count]
    keep = np.flatnonzero(np.argmax(np.asarray(model(x)), axis=1) == y)[:count]
    return x[keep], y[keep]


def time_attack(attack, model, x, y) -> dict:
    import numpy as np

    attack(model, x[:1], y[:1], seed=FLAGS.seed)                   # warm-up: traces
    t = time.perf_counter()
    result = attack(model, x, y, seed=FLAGS.seed)
    seconds = time.perf_counter() - t
    queries = float(np.sum(result.queries))
    success = result.is_adversarial[0]
    return {"queries": queries, "queries_per_second": queries / seconds, "seconds_per_image": seconds / len(y),
            "success": float(success.mean()), "median": float(np.median(result.distances[attack.norm][0])),
            "norm": attack.norm}


def time_distal(model, count: int) -> dict:
    import numpy as np

    from abs_tf.attacks.decision import distal_adversarials

    distal_adversarials(model, [0], steps=1)                        # warm-up: traces
    t = time.perf_counter()
    result = distal_adversarials(model, np.arange(count) % 10, steps=FLAGS.distal_steps, seed=FLAGS.seed)
    seconds = time.perf_counter() - t
    queries = float(result.queries.sum())
    return {"queries": queries, "queries_per_second": queries / seconds, "seconds_per_image": seconds / count,
            "success": result.reached_fraction, "median": float(np.median(result.confidence)), "norm": "p_target"}


def main(argv):
    del argv
    unknown = set(FLAGS.attacks) - set(ATTACK_NAMES)
    if unknown:
        raise app.UsageError(f"unknown attacks {sorted(unknown)}; choose from {ATTACK_NAMES}")
    rows = []
    print("| model | attack | images | queries | queries/s | s/image | success | median (norm) |")
    print("|---|---|---|---|---|---|---|---|")
    for model_name in FLAGS.models:
        model = load(model_name)
        x, y = correct_images(model, FLAGS.num_images)
        for name in FLAGS.attacks:
            if name == "latent_descent" and not callable(getattr(model, "search", None)):
                continue
            row = time_distal(model, len(y)) if name == "distal" else time_attack(make_attack(name), model, x, y)
            row.update(model=model_name, attack=name, images=int(len(y)))
            rows.append(row)
            print(f"| {model_name} | {name} | {len(y)} | {row['queries']:.0f} | {row['queries_per_second']:.0f} | "
                  f"{row['seconds_per_image']:.2f} | {row['success']:.2f} | {row['median']:.3g} ({row['norm']}) |",
                  flush=True)
    if FLAGS.output:
        Path(FLAGS.output).write_text(json.dumps({"flags": FLAGS.flag_values_dict(), "rows": rows}, indent=2,
                                                 default=str))


if __name__ == "__main__":
    app.run(main)
