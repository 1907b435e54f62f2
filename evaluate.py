"""Evaluates a model of abs-tf on MNIST test images.

  python evaluate.py --model=abs --attacks=none --num_images=1000 --output_dir=out/abs

Writes <output_dir>/summary.json (clean accuracy, images/s, the configuration, and for ABS
models the median certified-L2 estimate) and <output_dir>/per_image.npz (indices, labels,
logits, predictions and, for ABS, the per-image bounds). Attacks join with the evaluation
issue; `--attacks=none` is the clean evaluation.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from absl import app, flags, logging

from abs_tf.run_info import git_commit

FLAGS = flags.FLAGS
ABS_MODELS = ("abs", "binary_abs", "abs_official", "binary_abs_official")
SHARED_REFERENCE = Path(__file__).resolve().parent.parent / "shared" / "reference" / "abs_official"

flags.DEFINE_string("model", "abs", f"Model name: {', '.join(ABS_MODELS)} or a registered baseline.")
flags.DEFINE_string("weights", None, "Weights directory (default: weights/<model>/; ABS: weights/abs_vae).")
flags.DEFINE_string("official_dir", str(SHARED_REFERENCE),
                    "Directory of the original release's abs_vae_weights.npz and latent_samples.npy (*_official models).")
flags.DEFINE_list("attacks", ["none"], "Attacks to run; 'none' evaluates clean accuracy only.")
flags.DEFINE_integer("num_images", 1000, "Number of test images (the first N of the test set).")
flags.DEFINE_integer("start", 0, "Index of the first test image.")
flags.DEFINE_integer("batch_size", 64, "Images per model call.")
flags.DEFINE_integer("n_samples", 8000, "ABS: number of fixed latent samples.")
flags.DEFINE_integer("n_steps", 50, "ABS: search iterations (n_steps - 1 Adam updates + final evaluation).")
flags.DEFINE_enum("projection", None, ["original", "norm"],
                  "ABS: latent projection (default: 'original' for *_official, the model default otherwise).")
flags.DEFINE_boolean("xla", False, "ABS: XLA-compile the latent search (jit_compile).")
flags.DEFINE_string("data_dir", None, "MNIST IDX directory (default: $ABS_TF_DATA_DIR, else the Keras download).")
flags.DEFINE_string("output_dir", "out/eval", "Where summary.json and per_image.npz go.")

flags.register_validator("num_images", lambda v: v >= 1, "--num_images must be >= 1")
flags.register_validator("batch_size", lambda v: v >= 1, "--batch_size must be >= 1")
flags.register_validator("attacks", lambda v: v == ["none"],
                         "only --attacks=none is available so far (attacks arrive with the evaluation issue)")




def load_model():
    """The model named by --model, with the ABS options of the flags."""
    name = FLAGS.model
    if name in ABS_MODELS:
        from abs_tf.models.abs.model import ABS

        options = dict(binary=name.startswith("binary"), n_steps=FLAGS.n_steps, jit_compile=FLAGS.xla,
                       max_batch=FLAGS.batch_size)
        if FLAGS.projection:
            options["projection"] = FLAGS.projection
        if name.endswith("_official"):
            return ABS.from_official_dir(FLAGS.official_dir, **options)
        return ABS.from_weights(FLAGS.weights or "weights/abs_vae", n_samples=FLAGS.n_samples, **options)
    from abs_tf import registry

    return registry.load_model(name, FLAGS.weights)


def main(argv):
    del argv
    import keras
    import numpy as np

    from abs_tf import data

    out_dir = Path(FLAGS.output_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    images, labels = data.load_mnist("test", FLAGS.data_dir)
    stop = FLAGS.start + FLAGS.num_images
    if stop > len(images):
        raise app.UsageError(f"--start + --num_images = {stop} exceeds the {len(images)} test images")
    images, labels = images[FLAGS.start:stop], labels[FLAGS.start:stop]

    t0 = time.time()
    model = load_model()
    setup_s = time.time() - t0
    logging.info("model %s ready in %.1f s", FLAGS.model, setup_s)
    is_abs = FLAGS.model in ABS_MODELS

    logits, bounds = [], []
    # The running accuracy is a state, not a per-batch value for the bar to average.
    bar = keras.utils.Progbar(len(images), unit_name="image", stateful_metrics=["accuracy"])
    # The first batch includes tracing; it is timed separately so images/s is steady-state.
    first_batch_s, timed_s, timed_n = 0.0, 0.0, 0
    for i in range(0, len(images), FLAGS.batch_size):
        x, y = images[i:i + FLAGS.batch_size], labels[i:i + FLAGS.batch_size]
        t = time.time()
        if is_abs:
            from abs_tf.models.abs.certify import l2_lower_bounds

            out = model.search(x)
            batch_logits = (-out["losses"] * model.scalings).numpy()
            if not model.binary:
                bounds.append(l2_lower_bounds(x, out["reconstructions"].numpy(), out["latents"].numpy(), y))
        else:
            batch_logits = np.asarray(model(x))
        dt = time.time() - t
        if i == 0:
            first_batch_s = dt
        else:
            timed_s, timed_n = timed_s + dt, timed_n + len(x)
        logits.append(batch_logits)
        acc = float(np.mean(np.concatenate(logits).argmax(1) == labels[:i + len(x)]))
        bar.update(i + len(x), values=[("accuracy", acc)], finalize=False)
    bar.update(len(images), finalize=True)

    logits = np.concatenate(logits)
    predictions = logits.argmax(1)
    correct = predictions == labels
    images_per_second = timed_n / timed_s if timed_n else len(images) / max(first_batch_s, 1e-9)
    config = {k: FLAGS[k].value for k in ("model", "weights", "attacks", "num_images", "start", "batch_size",
                                           "data_dir", "output_dir")}
    if is_abs:
        config.update(n_samples=model.n_samples, n_steps=model.n_steps, projection=model.projection,
                      binary=model.binary, xla=model.jit_compile, learning_rate=model.learning_rate,
                      radius=model.radius, gradient=model.gradient,
                      loss_scalings=[round(float(v), 6) for v in model.scalings.numpy()])
        if FLAGS.model.endswith("_official"):
            config["official_dir"] = FLAGS.official_dir
    config.update(command=" ".join([Path(sys.executable).name, *sys.argv]), git_commit=git_commit())
    summary = {
        "model": FLAGS.model,
        "num_images": int(len(images)),
        "clean_accuracy": float(correct.mean()),
        "num_correct": int(correct.sum()),
        "images_per_second": float(images_per_second),
        "first_batch_seconds": float(first_batch_s),
        "setup_seconds": float(setup_s),
        "config": config,
    }
    per_image = dict(indices=np.arange(FLAGS.start, stop), labels=labels, logits=logits, predictions=predictions)
    if bounds:
        bounds = np.concatenate(bounds)
        summary["certified_l2_estimate_median"] = float(np.median(bounds))
        summary["certified_l2_estimate_note"] = ("estimate of a certificate: the latent search stands in for the "
                                                 "minimum over z (SPEC section 3); misclassified images count 0")
        per_image["certified_l2_estimate"] = bounds
    (out_dir / "summary.json").write_text(json.dumps(summary, indent=2))
    np.savez_compressed(out_dir / "per_image.npz", **per_image)
    print(f"{FLAGS.model}: clean accuracy {summary['clean_accuracy']:.2%} on {len(images)} images "
          f"({summary['num_correct']} correct), {images_per_second:.1f} images/s"
          + (f", median certified-L2 estimate {summary['certified_l2_estimate_median']:.3f}" if bounds is not None
             and len(bounds) else ""))
    print(f"wrote {out_dir / 'summary.json'}")


if __name__ == "__main__":
    app.run(main)
