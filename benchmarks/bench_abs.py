"""Throughput of ABS inference (the hot path of every evaluation), with FLOP counts.

  python benchmarks/bench_abs.py --batch_sizes=1,16,64,256 --modes=graph,xla

For each mode (graph = tf.function, xla = jit_compile) and batch size: images/s of the full
search (8000 samples, 50 steps by default), counted GFLOP per image and the achieved GFLOP/s;
the same run times a large float32 matmul as "what this machine reaches", and breaks one
image batch's time down into its parts (sample selection, gradient steps, final evaluation).
Numbers are only comparable within one run (shared machines are noisy).
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

from absl import app, flags

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))   # run as a script from anywhere

from abs_tf.paths import reference_dir  # noqa: E402  (abs_tf before TensorFlow: its oneDNN setting)

FLAGS = flags.FLAGS

flags.DEFINE_list("batch_sizes", ["1", "16", "64", "256"], "Batch sizes to time.")
flags.DEFINE_list("modes", ["graph", "xla"], "graph and/or xla.")
flags.DEFINE_integer("repeats", 3, "Timed calls per configuration (after one warm-up call).")
flags.DEFINE_integer("min_images", 64, "At least this many images are timed per configuration.")
flags.DEFINE_integer("n_steps", 50, "Search iterations.")
flags.DEFINE_string("weights", "official", "'official' (the release's weights, from $ABS_TF_REFERENCE_DIR or "
                    "../shared/reference/abs_official) or a directory of our VAE weights.")
flags.DEFINE_boolean("binary", False, "Binary ABS.")
flags.DEFINE_integer("matmul_size", 2048, "Side of the square float32 matmul timed as the machine's reference rate.")
flags.DEFINE_string("output", None, "Optional JSON file for the results.")


def time_matmul(n: int, repeats: int = 10):
    import tensorflow as tf

    a = tf.random.normal([n, n])
    b = tf.random.normal([n, n])
    f = tf.function(lambda a, b: tf.reduce_sum(tf.matmul(a, b)))
    f(a, b).numpy()
    t = time.perf_counter()
    for _ in range(repeats):
        f(a, b).numpy()
    return 2 * n ** 3 * repeats / (time.perf_counter() - t) / 1e9


def time_calls(fn, x, repeats, min_images):
    fn(x)["losses"].numpy()  # warm-up / trace
    calls = max(repeats, -(-min_images // len(x)))
    t = time.perf_counter()
    for _ in range(calls):
        fn(x)["losses"].numpy()
    return calls * len(x) / (time.perf_counter() - t)


def breakdown(model, x, steps=5):
    """Seconds per part for one batch: selection, one gradient step, one forward evaluation."""
    import tensorflow as tf

    xt = tf.constant(x)
    select = tf.function(lambda x: model.initial_latents(x))
    idx, _ = select(xt)
    z = tf.gather(model.samples, idx)
    grad = tf.function(lambda x, z: model._loss_gradient(x, z))
    fwd = tf.function(lambda x, z: model._losses(x, z)[0])
    parts = {}
    for name, fn, args in (("selection", select, (xt,)), ("gradient_step", grad, (xt, z)), ("forward", fwd, (xt, z))):
        tf.nest.map_structure(lambda t: t.numpy(), fn(*args))
        t = time.perf_counter()
        for _ in range(steps):
            tf.nest.map_structure(lambda t: t.numpy(), fn(*args))
        parts[name] = (time.perf_counter() - t) / steps
    return parts


def main(argv):
    del argv
    import numpy as np
    import tensorflow as tf

    from abs_tf import data
    from abs_tf.models import preprocessing as model_preprocessing
    from abs_tf.models.abs.model import ABS
    from tensorflow.python.util import _pywrap_util_port

    images, _ = data.load_mnist("test")
    if FLAGS.binary:  # the search (timed below) takes the images after the model's front end
        images = model_preprocessing.binarize(images).numpy()
    t = time.perf_counter()
    if FLAGS.weights == "official":
        model = ABS.from_official_dir(reference_dir(), binary=FLAGS.binary, n_steps=FLAGS.n_steps)
    else:
        model = ABS.from_weights(FLAGS.weights, binary=FLAGS.binary, n_steps=FLAGS.n_steps)
    setup = time.perf_counter() - t
    flops = model.flops_per_image()
    gflop = flops["total"] / 1e9
    results = {"setup_seconds": setup, "gflop_per_image": gflop, "flops": flops,
               "onednn": bool(_pywrap_util_port.IsMklEnabled()), "threads": os.cpu_count(),
               "matmul_gflops_before": time_matmul(FLAGS.matmul_size), "runs": []}
    print(f"setup (decode {model.n_samples} samples x 10 classes): {setup:.1f} s; "
          f"{gflop:.3f} GFLOP per image; oneDNN {'on' if results['onednn'] else 'off'}")
    print(f"matmul {FLAGS.matmul_size}^2 float32: {results['matmul_gflops_before']:.1f} GFLOP/s")
    print("| mode | batch | images/s | GFLOP/s | % of matmul |")
    print("|---|---|---|---|---|")
    for mode in FLAGS.modes:
        variant = model.variant(jit_compile=(mode == "xla"))
        for bs in (int(b) for b in FLAGS.batch_sizes):
            x = images[:bs]
            ips = time_calls(variant._search_fn, tf.constant(x), FLAGS.repeats, FLAGS.min_images)
            row = {"mode": mode, "batch": bs, "images_per_second": ips, "gflops": ips * gflop}
            results["runs"].append(row)
            print(f"| {mode} | {bs} | {ips:.1f} | {ips * gflop:.1f} | "
                  f"{100 * ips * gflop / results['matmul_gflops_before']:.0f} % |", flush=True)
    results["matmul_gflops_after"] = time_matmul(FLAGS.matmul_size)
    parts = breakdown(model, images[:64])
    per_image = {"selection": parts["selection"], "adam_steps": (model.n_steps - 1) * parts["gradient_step"],
                 "final_evaluation": parts["forward"]}
    total = sum(per_image.values())
    results["breakdown_batch64_seconds"] = per_image
    print(f"matmul after: {results['matmul_gflops_after']:.1f} GFLOP/s")
    results["gradient_step_ms_batch64"] = 1e3 * parts["gradient_step"]
    print("time per batch of 64, by part (graph mode): " + ", ".join(
        f"{k} {v:.3f} s ({100 * v / total:.0f} %)" for k, v in per_image.items())
        + f"; one gradient step (64 images x 10 classes) {1e3 * parts['gradient_step']:.1f} ms")
    if FLAGS.output:
        Path(FLAGS.output).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    app.run(main)
