"""Attacking ABS: which loss, and envelope (exact) vs estimated gradients.

  # 1. the loss: FGM (L2) and FGSM (L-inf) minimal adversarials with cross-entropy, margin and
  #    cross-entropy of the calibrated 440x logits (envelope gradient)
  python scripts/compare_abs_gradients.py --mode=loss --num_images=16
  python scripts/compare_abs_gradients.py --mode=loss --model=cnn --num_images=16
  # 2. the gradient: envelope vs coordinate-wise finite differences (the paper's estimator,
  #    2 x 784 queries per gradient) vs antithetic Gaussian sampling, with the strong loss
  python scripts/compare_abs_gradients.py --mode=estimators --num_images=16 --samples=50,392
  # 3. iterative attacks (PGD, CW, DeepFool) with the envelope gradient and a Gaussian estimate
  python scripts/compare_abs_gradients.py --mode=iterative --num_images=16 --samples=20

Every figure is verified (re-classified by the model); the medians count images without an
adversarial as +inf.

What it showed (our ABS, shipped weights, test images 0-15, minimal-adversarial search):
* loss: FGM L2 median 3.30 (cross-entropy), 2.15 (cross-entropy of the 440x logits), 1.92
  (margin); FGSM L-inf 0.255 (cross-entropy; one image never broken), 0.185, 0.183. The margin
  is the default loss of every gradient attack (on the CNN it is not worse: 1.14 vs 1.20 and
  0.076 vs 0.083).
* gradient, with the margin loss: coordinate-wise finite differences (the paper's estimator,
  1568 queries per gradient) give the envelope gradient's adversarials (per image 0.97-1.02x;
  FGM 1.905 vs 1.920, FGSM 0.185 vs 0.183), so the paper's estimate does not overstate ABS's
  robustness for these attacks; antithetic Gaussian sampling does: 392 pairs FGM 3.54 /
  FGSM 0.228, 50 pairs 8.92 (one image never broken) / 0.381. ``--model`` is a registry name (default ``abs``: our VAEs, 8000 samples,
50 search steps; ``--n_samples`` / ``--n_steps`` only for smoke tests). ``--output`` writes the
rows as JSON.
"""

import json
import os
import time

os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")

from absl import app, flags

FLAGS = flags.FLAGS


def define_flags():
    """The script's flags (defined on demand, so tests can import the module)."""
    flags.DEFINE_enum("mode", "loss", ("loss", "estimators", "iterative"), "Which comparison to run.")
    flags.DEFINE_string("model", "abs", "Registry name of the model attacked.")
    flags.DEFINE_string("weights", None, "Weights directory (default: the registry's).")
    flags.DEFINE_integer("start", 0, "First test image.")
    flags.DEFINE_integer("num_images", 16, "Number of test images.")
    flags.DEFINE_integer("n_samples", None, "ABS only: latent samples (default: the model's 8000; smoke tests only).")
    flags.DEFINE_integer("n_steps", None, "ABS only: latent search steps (default: the model's 50; smoke tests only).")
    flags.DEFINE_enum("loss", "margin", ("margin", "crossentropy"), "estimators / iterative: the attack loss.")
    flags.DEFINE_list("samples", ["50"], "Antithetic Gaussian pairs per estimated gradient (one run per value).")
    flags.DEFINE_boolean("coordinates", True, "estimators: also run coordinate-wise finite differences.")
    flags.DEFINE_float("sigma", 0.01, "Probe size of the estimators (pixels).")
    flags.DEFINE_integer("batch_size", 256, "Probe images per model call of the estimators.")
    flags.DEFINE_integer("steps", 10, "iterative: PGD steps.")
    flags.DEFINE_list("linf_epsilons", ["0.1", "0.2", "0.3"], "iterative: PGD-L-inf budgets.")
    flags.DEFINE_list("l2_epsilons", ["1.0", "1.5", "2.5"], "iterative: PGD-L2 budgets.")
    flags.DEFINE_integer("cw_steps", 100, "iterative: CW-L2 optimisation steps per binary-search step.")
    flags.DEFINE_integer("cw_binary_steps", 3, "iterative: CW-L2 binary-search steps over the constant.")
    flags.DEFINE_float("cw_stepsize", 5e-2, "iterative: CW-L2 Adam step (tanh space).")
    flags.DEFINE_float("cw_initial_const", 10.0, "iterative: CW-L2 initial trade-off constant.")
    flags.DEFINE_string("output", None, "Optional JSON file for the result rows.")


def scaled(model, scale: float):
    """``images -> scale * model(images)`` (e.g. ABS's calibrated 440x logits), gradients included."""
    def logits(images):
        return scale * model(images)
    logits.name = f"{getattr(model, 'name', 'model')}x{scale:g}"
    return logits


def loss_variants(model, is_abs: bool):
    """(label, model, loss) triples of the loss comparison."""
    from abs_tf.models.abs.confidence import LOGIT_SCALE
    variants = [("crossentropy", model, "crossentropy"), ("margin", model, "margin")]
    if is_abs:
        variants.append((f"crossentropy x{LOGIT_SCALE:g} logits", scaled(model, LOGIT_SCALE), "crossentropy"))
    return variants


def gradient_variants(model, samples, coordinates: bool, sigma: float, batch_size: int):
    """(label, model) pairs: the model's own (envelope) gradient, then its estimates."""
    from abs_tf import attacks
    out = [("envelope", model)]
    for n in samples:
        out.append((f"gaussian {n} pairs", attacks.EstimatedGradients(model, samples=int(n), sigma=sigma,
                                                                       batch_size=batch_size)))
    if coordinates:
        out.append(("coordinates", attacks.EstimatedGradients(model, method="coordinates", sigma=sigma,
                                                              batch_size=batch_size)))
    return out


def minimal_row(attack, model, images, labels, **labels_of_row) -> dict:
    """Runs `minimize`; the row: median, success, per-image distances, queries, seconds."""
    import numpy as np

    from abs_tf import attacks
    t = time.time()
    best = attacks.minimize(attack, model, images, labels)
    d = best.distances[attack.norm]
    return dict(labels_of_row, attack=repr(attack), norm=attack.norm, median=best.median(),
                found=float(best.is_adversarial.mean()), no_gradient=int(best.no_gradient.sum()),
                distances=np.round(d, 4).tolist(), queries_per_image=float(best.queries.mean()),
                seconds=round(time.time() - t, 1))


def _print(row):
    keys = ", ".join(f"{k}={row[k]}" for k in ("gradient", "loss") if k in row)
    print(f"{row['attack'].split('(')[0]} {row['norm']} [{keys}]: median {row['median']:.3f}, "
          f"found {row['found']:.0%}, no-gradient {row['no_gradient']}, queries/image "
          f"{row['queries_per_image']:.0f}, {row['seconds']:.0f} s; per image {row['distances']}", flush=True)


def _single_step_attacks(loss):
    from abs_tf import attacks
    return (attacks.FGM(loss=loss), attacks.FGSM(loss=loss))


def compare_losses(model, images, labels, is_abs: bool):
    rows = []
    for label, target, loss in loss_variants(model, is_abs):
        for attack in _single_step_attacks(loss):
            rows.append(minimal_row(attack, target, images, labels, gradient="envelope", loss=label))
            _print(rows[-1])
    return rows


def compare_estimators(model, images, labels):
    rows = []
    for label, target in gradient_variants(model, FLAGS.samples, FLAGS.coordinates, FLAGS.sigma, FLAGS.batch_size):
        for attack in _single_step_attacks(FLAGS.loss):
            rows.append(minimal_row(attack, target, images, labels, gradient=label, loss=FLAGS.loss))
            _print(rows[-1])
    return rows


def compare_iterative(model, images, labels):
    from abs_tf import attacks
    rows = []
    variants = gradient_variants(model, FLAGS.samples, False, FLAGS.sigma, FLAGS.batch_size)
    for norm, eps in (("linf", FLAGS.linf_epsilons), ("l2", FLAGS.l2_epsilons)):
        eps = [float(e) for e in eps]
        for label, target in variants:
            t = time.time()
            attack = attacks.PGD(norm=norm, steps=FLAGS.steps, loss=FLAGS.loss)
            result = attack(target, images, labels, epsilons=eps)
            row = dict(attack=repr(attack), norm=norm, gradient=label, loss=FLAGS.loss, epsilons=eps,
                       robust_accuracy=result.robust_accuracy.tolist(), no_gradient=int(result.no_gradient.sum()),
                       queries_per_image=float(result.queries.mean()), seconds=round(time.time() - t, 1))
            print(f"PGD-{norm} {FLAGS.steps} steps [gradient={label}]: robust accuracy "
                  + ", ".join(f"{e:g}: {a:.0%}" for e, a in zip(eps, row["robust_accuracy"]))
                  + f"; queries/image {row['queries_per_image']:.0f}, {row['seconds']:.0f} s", flush=True)
            rows.append(row)
    cw = attacks.CarliniWagnerL2(binary_search_steps=FLAGS.cw_binary_steps, steps=FLAGS.cw_steps,
                                 stepsize=FLAGS.cw_stepsize, initial_const=FLAGS.cw_initial_const)
    for attack in (cw, attacks.DeepFool(norm="l2"), attacks.FMN(norm="l2"), attacks.DDN(loss=FLAGS.loss)):
        rows.append(minimal_row(attack, model, images, labels, gradient="envelope", loss="(own)"))
        _print(rows[-1])
    return rows


def _load_model():
    from abs_tf import registry
    if FLAGS.model.endswith("abs") and (FLAGS.n_samples or FLAGS.n_steps):
        from abs_tf.models.abs.model import ABS
        options = {k: v for k, v in (("n_samples", FLAGS.n_samples), ("n_steps", FLAGS.n_steps)) if v}
        return ABS.from_weights(FLAGS.weights, binary=FLAGS.model == "binary_abs", **options)
    return registry.load_model(FLAGS.model, FLAGS.weights)


def main(argv):
    del argv
    from abs_tf import attacks
    from abs_tf.data import load_mnist

    images, labels = load_mnist("test")
    x, y = images[FLAGS.start:FLAGS.start + FLAGS.num_images], labels[FLAGS.start:FLAGS.start + FLAGS.num_images]
    model = _load_model()
    if getattr(model, "preprocessing", None) is not None:
        model = attacks.StraightThrough(model)  # gradients of the network behind its binarization
    is_abs = FLAGS.model.endswith("abs")
    print(f"model {FLAGS.model}, test images {FLAGS.start}..{FLAGS.start + len(y) - 1}", flush=True)
    run = {"loss": lambda: compare_losses(model, x, y, is_abs), "estimators": lambda: compare_estimators(model, x, y),
           "iterative": lambda: compare_iterative(model, x, y)}[FLAGS.mode]
    rows = run()
    if FLAGS.output:
        with open(FLAGS.output, "w") as f:
            json.dump({"flags": {k: FLAGS[k].value for k in ("mode", "model", "start", "num_images", "n_samples",
                                                             "n_steps", "loss", "samples", "sigma")},
                       "rows": rows}, f, indent=1)


if __name__ == "__main__":
    define_flags()
    app.run(main)
