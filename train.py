"""Trains the models of abs-tf.

  python train.py --model=vae --out_dir=runs/abs_vae          # the ten class VAEs of ABS
  python train.py --model=cnn --out_dir=runs/cnn              # baselines (see weights/*/PROVENANCE.md)
  python train.py --model=binary_cnn --out_dir=runs/binary_cnn
  python train.py --model=substitute --seed=1 --out_dir=runs/substitute
  python train.py --model=madry --out_dir=runs/madry          # L-inf adversarial training (PGD-4)
  python train.py --model=abs_margin --init_from=runs/abs_vae --out_dir=runs/abs_margin
                                                              # decoders fine-tuned with a class margin

`nearest_neighbor` needs no training. Run the same command again after an interruption: it
resumes from the last epoch checkpoint (finished VAE classes are skipped). TensorBoard logs:
<out_dir>/tb. Defaults of --epochs/--batch_size/--learning_rate/--schedule depend on the model.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from absl import app, flags, logging

from abs_tf.run_info import git_commit

FLAGS = flags.FLAGS
MODELS = ("vae", "abs_margin", "cnn", "binary_cnn", "madry", "substitute")
# Per-model defaults for flags left unset: epochs, batch_size, learning_rate, schedule, augment.
DEFAULTS = {
    "vae": dict(epochs=30, batch_size=64, learning_rate=2e-3, schedule="cosine", augment=True),
    # Fine-tuning of trained VAEs' decoders (abs_tf.training.margin); schedule/augment unused.
    "abs_margin": dict(epochs=1, batch_size=64, learning_rate=1e-4, schedule="cosine", augment=False),
    "cnn": dict(epochs=5, batch_size=100, learning_rate=1e-3, schedule="cosine", augment=True),
    "binary_cnn": dict(epochs=3, batch_size=100, learning_rate=1e-3, schedule="cosine", augment=False),
    "substitute": dict(epochs=3, batch_size=100, learning_rate=1e-3, schedule="cosine", augment=False),
    # PGD-4 adversarial training, Adam with a one-cycle learning rate (as in Wong et al. 2020).
    "madry": dict(epochs=3, batch_size=100, learning_rate=1e-3, schedule="triangular", augment=False),
}

flags.DEFINE_enum("model", "vae", MODELS, "Which model to train.")
flags.DEFINE_list("classes", [str(c) for c in range(10)], "VAE only: the digit classes whose VAEs to train.")
flags.DEFINE_integer("epochs", None, "Total number of training epochs (per class VAE). Default: per model.")
flags.DEFINE_integer("batch_size", None, "Mini-batch size. Default: per model.")
flags.DEFINE_float("learning_rate", None, "Adam peak learning rate. Default: per model.")
flags.DEFINE_enum("schedule", None, ("cosine", "triangular"),
                  "Baselines: learning-rate schedule (cosine: decay to 5%; triangular: 0 -> peak at 40% -> 0). "
                  "The VAEs always use cosine.")
flags.DEFINE_enum("adv_method", "pgd", ("pgd", "fgsm_rs"),
                  "madry only: adversarial examples for training: cleverhans PGD with random start (Madry et al. "
                  "2018) or FGSM with random start (Wong et al. 2020; overfitted catastrophically here, see "
                  "weights/madry/PROVENANCE.md).")
flags.DEFINE_float("adv_eps", 0.3, "madry only: L-inf radius of adversarial training.")
flags.DEFINE_float("adv_step_size", None, "madry only: attack step (default 0.1 for pgd, 0.3 for fgsm_rs -- Wong et "
                   "al. used 0.375).")
flags.DEFINE_integer("adv_steps", 4, "madry only, adv_method=pgd: PGD steps per training batch (the MNIST "
                     "challenge used 40 steps of 0.01; 4 of 0.1 fit a CPU budget).")
flags.DEFINE_float("adv_eps_warmup_epochs", 0.0,
                   "madry only, adv_method=fgsm_rs: eps (and the step with it) grows linearly to --adv_eps over "
                   "this many epochs.")
flags.DEFINE_integer("train_images", 0, "Baselines: train on the first this-many training images only (0: all 60000; "
                     "for smoke tests).")
flags.DEFINE_integer("monitor_images", 200,
                     "madry only: per epoch, PGD-40 accuracy on this many first test images (TensorBoard; 0: off).")
flags.DEFINE_integer("robust_eval_images", 1000,
                     "madry only: after training, PGD-40 (eps 0.3, step 0.01, random start) accuracy on this many "
                     "first test images (0: skip).")
flags.DEFINE_integer("pgd100_eval_images", 0,
                     "madry only: after training, PGD-100 with 10 restarts (eps 0.3, step 0.01) on this many first "
                     "test images (0: skip; slow: ~25x the PGD-40 evaluation).")
flags.DEFINE_float("beta", 1.0, "VAE only: weight of the KL term (the original used 1).")
flags.DEFINE_enum("vae_objective", "elbo", ("elbo", "map"),
                  "VAE only: elbo (the VAE loss, one reparameterised sample) or map (the ABS test-time loss "
                  "at the encoder mean: ||x - G(mu)||² + ½||mu||²; for fine-tuning with --init_from).")
flags.DEFINE_float("kl_mean_weight", None, "VAE only: weight of the ½||mu||² part of the KL term (its variance part "
                   "keeps --beta); default: --beta, the plain beta-VAE.", lower_bound=0.0)
flags.DEFINE_enum("vae_likelihood", "gaussian", ("gaussian", "bernoulli"),
                  "VAE only: training likelihood of the pixels: gaussian (squared error, the original's and "
                  "the ABS test-time loss) or bernoulli (binary cross-entropy).")
flags.DEFINE_float("augment_probability", 0.3, "VAE only: fraction of training images that are augmented.")
flags.DEFINE_float("augment_max_shift", 1.5, "VAE only: largest random translation of the augmentation, pixels "
                   "(0: zoom and rotation only).")
flags.DEFINE_float("augment_shear_deg", 0.0, "VAE only: largest random shear angle of the augmentation, degrees.",
                   lower_bound=0.0)
flags.DEFINE_float("elastic_probability", 0.0, "VAE only: fraction of training images given a random elastic "
                   "distortion (with --augment; 0: none).", lower_bound=0.0, upper_bound=1.0)
flags.DEFINE_float("elastic_magnitude", 1.5, "VAE only: largest displacement of the elastic distortion, pixels.",
                   lower_bound=0.0)
flags.DEFINE_string("init_from", None,
                    "Start from trained weights (fine-tuning): for the VAEs a directory of vae_<c>.weights.h5, "
                    "for the baselines a .weights.h5 file or a weights/<model> directory. A checkpoint in "
                    "--out_dir (resume) takes precedence.")
flags.DEFINE_float("margin_alpha", 1000.0, "abs_margin only: sharpness of the soft class margin, 1 / (per-pixel "
                   "loss units).")
flags.DEFINE_float("margin_pool_ratio", 1.5, "abs_margin only: train on images whose best wrong class's loss is "
                   "within this factor of the true class's (sample selection only).")
flags.DEFINE_integer("margin_search_samples", 2000, "abs_margin only: latent samples of the training-time search.",
                     lower_bound=1)
flags.DEFINE_integer("margin_search_steps", 20, "abs_margin only: iterations of the training-time search.",
                     lower_bound=1)
flags.DEFINE_integer("margin_refresh", 20, "abs_margin only: rebuild the search model from the current decoders "
                     "every this-many updates.", lower_bound=1)
flags.DEFINE_boolean("augment", None, "Light random zoom/rotation/shift on 30% of training images "
                     "(default: on for the VAEs, off for the baselines).")
flags.DEFINE_integer("seed", 0, "Random seed; a fixed seed gives identical weights.")
flags.DEFINE_string("data_dir", None, "Directory of MNIST IDX files (default: $ABS_TF_DATA_DIR, else the Keras download).")
flags.DEFINE_string("out_dir", None, "Run directory: checkpoints, TensorBoard logs (tb/), final weights. "
                    "Default: runs/abs_vae for the VAEs, runs/<model> otherwise.")
flags.DEFINE_integer("verbose", 1, "1: progress bar per epoch; 0: quiet.")


def _validate_classes(values):
    try:
        return all(0 <= int(v) <= 9 for v in values) and len(set(values)) == len(values)
    except ValueError:
        return False


flags.register_validator("margin_alpha", lambda v: v > 0, "--margin_alpha must be > 0")
flags.register_validator("margin_pool_ratio", lambda v: v > 1, "--margin_pool_ratio must be > 1")
flags.register_multi_flags_validator(
    ["model", "init_from"], lambda f: f["model"] != "abs_margin" or f["init_from"] is not None,
    "--model=abs_margin fine-tunes trained VAEs: pass --init_from=<directory of vae_{c}.weights.h5>")
flags.register_validator("classes", _validate_classes, "--classes must be distinct digits 0..9")
flags.register_validator("epochs", lambda v: v is None or v >= 1, "--epochs must be >= 1")
flags.register_validator("batch_size", lambda v: v is None or v >= 1, "--batch_size must be >= 1")
flags.register_validator("learning_rate", lambda v: v is None or v > 0, "--learning_rate must be > 0")
flags.register_validator("adv_eps", lambda v: 0 < v <= 1, "--adv_eps must be in (0, 1]")
flags.register_validator("adv_step_size", lambda v: v is None or v > 0, "--adv_step_size must be > 0")
flags.register_validator("adv_steps", lambda v: v >= 1, "--adv_steps must be >= 1")
flags.register_validator("adv_eps_warmup_epochs", lambda v: v >= 0, "--adv_eps_warmup_epochs must be >= 0")
flags.register_validator("train_images", lambda v: 0 <= v <= 60000, "--train_images must be in 0..60000")
flags.register_validator("monitor_images", lambda v: 0 <= v <= 10000, "--monitor_images must be in 0..10000")
flags.register_validator("robust_eval_images", lambda v: 0 <= v <= 10000, "--robust_eval_images must be in 0..10000")
flags.register_validator("pgd100_eval_images", lambda v: 0 <= v <= 10000, "--pgd100_eval_images must be in 0..10000")


def _resolve_defaults():
    """Fills the per-model defaults of flags left unset (recorded in config.json)."""
    for key, value in DEFAULTS[FLAGS.model].items():
        if FLAGS[key].value is None:
            FLAGS[key].value = value
    if FLAGS.out_dir is None:
        FLAGS.out_dir = "runs/abs_vae" if FLAGS.model == "vae" else f"runs/{FLAGS.model}"
    if FLAGS.adv_step_size is None:
        FLAGS.adv_step_size = 0.3 if FLAGS.adv_method == "fgsm_rs" else 0.1




def train_vaes(out_dir: Path):
    from abs_tf import data
    from abs_tf.training import loop as training
    from abs_tf.training import vae as vae_training

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
            beta=FLAGS.beta, kl_mean_weight=FLAGS.kl_mean_weight, seed=FLAGS.seed, augment=FLAGS.augment,
            objective=FLAGS.vae_objective, likelihood=FLAGS.vae_likelihood,
            augment_probability=FLAGS.augment_probability, augment_max_shift=FLAGS.augment_max_shift,
            augment_shear_deg=FLAGS.augment_shear_deg, elastic_probability=FLAGS.elastic_probability,
            elastic_magnitude=FLAGS.elastic_magnitude, verbose=FLAGS.verbose,
            init_weights=None if FLAGS.init_from is None
            else Path(FLAGS.init_from) / vae_training.WEIGHTS_PATTERN.format(c))
        results[c] = metrics
        logging.info("class %d: test loss %.5f, reconstruction MSE %.5f, %.0f s", c, metrics["loss"],
                     metrics["reconstruction_mse"], metrics["wall_time_s"])
    return results


def train_abs_margin(out_dir: Path):
    """Fine-tunes the decoders of the VAEs in --init_from with the class margin; writes all ten
    ``vae_{c}.weights.h5`` (encoders unchanged) to ``out_dir``."""
    from abs_tf import data
    from abs_tf.training import margin as margin_training
    from abs_tf.training import loop as training
    from abs_tf.training import vae as vae_training

    train_x, train_y = data.load_mnist("train", FLAGS.data_dir)
    if FLAGS.train_images:
        train_x, train_y = train_x[:FLAGS.train_images], train_y[:FLAGS.train_images]
    training.set_global_determinism(FLAGS.seed)
    vaes = vae_training.load_vaes(FLAGS.init_from)
    metrics = margin_training.fine_tune_margin(
        vaes, train_x, train_y, out_dir=out_dir, epochs=FLAGS.epochs, batch_size=FLAGS.batch_size,
        learning_rate=FLAGS.learning_rate, alpha=FLAGS.margin_alpha, pool_ratio=FLAGS.margin_pool_ratio,
        n_samples=FLAGS.margin_search_samples, n_steps=FLAGS.margin_search_steps, refresh=FLAGS.margin_refresh,
        seed=FLAGS.seed, verbose=FLAGS.verbose)
    test_x, test_y = data.load_mnist("test", FLAGS.data_dir)
    for c, vae in enumerate(vaes):
        vae.save_weights(out_dir / vae_training.WEIGHTS_PATTERN.format(c))
        # Per-class record in the layout of `--model=vae` runs (scripts/collect_vae_weights.py reads it);
        # the test metrics go through the (unchanged) encoder, so they lag the tuned decoder.
        record = dict(vae_training.evaluate_vae(vae, test_x[test_y == c]), class_id=c, epochs=FLAGS.epochs,
                      fine_tuning="abs_margin", init_from=FLAGS.init_from)
        (out_dir / f"vae_{c}.json").write_text(json.dumps(record, indent=2))
    logging.info("abs_margin: pool of %d training images; %s", metrics["pool_size"],
                 {k: v[-1] for k, v in metrics["history"].items()})
    return metrics


def train_baseline(out_dir: Path):
    from abs_tf import data, registry
    from abs_tf.training import adversarial as adversarial_training
    from abs_tf.training import classifier as classifier_training
    from abs_tf.training import loop as training

    train_x, train_y = data.load_mnist("train", FLAGS.data_dir)
    if FLAGS.train_images:
        train_x, train_y = train_x[:FLAGS.train_images], train_y[:FLAGS.train_images]
    test_x, test_y = data.load_mnist("test", FLAGS.data_dir)
    training.set_global_determinism(FLAGS.seed)
    model = registry.build_model(FLAGS.model)
    if FLAGS.init_from:
        init = Path(FLAGS.init_from)
        init = init / classifier_training.WEIGHTS_FILE if init.is_dir() else init
        if not init.is_file():
            raise FileNotFoundError(f"--init_from: no weights file {init}")
        model.load_weights(init)
        logging.info("starting from the weights in %s", init)
    adversarial = None
    if FLAGS.model == "madry":
        adversarial = adversarial_training.AdversarialConfig(
            method=FLAGS.adv_method, eps=FLAGS.adv_eps, step_size=FLAGS.adv_step_size,
            steps=FLAGS.adv_steps if FLAGS.adv_method == "pgd" else 1,
            eps_warmup_steps=int(round(FLAGS.adv_eps_warmup_epochs * -(-len(train_x) // FLAGS.batch_size)))
            if FLAGS.adv_method == "fgsm_rs" else 0)
    logging.info("training %s (%d parameters) on %d images%s", FLAGS.model, model.count_params(), len(train_x),
                 f", adversarial: {adversarial}" if adversarial else "")
    model, metrics = classifier_training.train_classifier(
        model, train_x, train_y, test_x, test_y, out_dir=out_dir, epochs=FLAGS.epochs,
        batch_size=FLAGS.batch_size, learning_rate=FLAGS.learning_rate, schedule=FLAGS.schedule,
        seed=FLAGS.seed, adversarial=adversarial, augment=FLAGS.augment, monitor_images=FLAGS.monitor_images,
        verbose=FLAGS.verbose)
    logging.info("%s: test accuracy %.4f (10000 images)", FLAGS.model, metrics["test_accuracy"])
    previous = json.loads((out_dir / classifier_training.METRICS_FILE).read_text()) \
        if (out_dir / classifier_training.METRICS_FILE).is_file() else {}
    if metrics["resumed_from_epoch"] >= FLAGS.epochs:  # nothing trained now: keep the recorded history
        metrics.pop("history")
    metrics["train_wall_time_s"] = previous.get("train_wall_time_s", 0.0) + (
        metrics["wall_time_s_this_invocation"] if metrics["resumed_from_epoch"] < FLAGS.epochs else 0.0)
    if adversarial is not None:
        robust_eval = dict(eps=0.3, step_size=0.01, seed=FLAGS.seed)
        n = FLAGS.robust_eval_images
        if n:
            t = time.time()
            metrics[f"pgd40_accuracy_first{n}"] = adversarial_training.robust_accuracy(
                model, test_x[:n], test_y[:n], steps=40, restarts=1, **robust_eval)
            metrics[f"pgd40_eval_wall_time_s"] = time.time() - t
            logging.info("PGD-40 accuracy on the first %d test images: %.4f", n, metrics[f"pgd40_accuracy_first{n}"])
        n = FLAGS.pgd100_eval_images
        if n:
            t = time.time()
            metrics[f"pgd100x10_accuracy_first{n}"] = adversarial_training.robust_accuracy(
                model, test_x[:n], test_y[:n], steps=100, restarts=10, **robust_eval)
            metrics["pgd100x10_eval_wall_time_s"] = time.time() - t
            logging.info("PGD-100 x 10 restarts accuracy on the first %d test images: %.4f", n,
                         metrics[f"pgd100x10_accuracy_first{n}"])
    classifier_training.write_metrics(out_dir, metrics)
    return metrics


def main(argv):
    del argv
    _resolve_defaults()
    out_dir = Path(FLAGS.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    keys = ["model", "epochs", "batch_size", "learning_rate", "seed", "data_dir", "out_dir", "init_from"]
    if FLAGS.model == "abs_margin":
        keys += ["margin_alpha", "margin_pool_ratio", "margin_search_samples", "margin_search_steps",
                 "margin_refresh", "train_images"]
    elif FLAGS.model == "vae":
        keys += ["classes", "beta", "augment", "augment_probability", "augment_max_shift", "augment_shear_deg",
                 "elastic_probability", "elastic_magnitude", "vae_objective",
                 "vae_likelihood", "kl_mean_weight"]
    else:
        keys += ["schedule", "augment", "train_images"]
    if FLAGS.model == "madry":
        keys += ["adv_method", "adv_eps", "adv_step_size", "adv_steps", "adv_eps_warmup_epochs", "monitor_images",
                 "robust_eval_images", "pgd100_eval_images"]
    config = {k: FLAGS[k].value for k in keys}
    config.update(command=" ".join([Path(sys.executable).name, *sys.argv]), git_commit=git_commit())
    (out_dir / "config.json").write_text(json.dumps(config, indent=2))
    if FLAGS.model not in ("vae", "abs_margin") and not (out_dir / "train_config.json").exists():
        # The invocation that started the run (config.json is rewritten by resumes/re-evaluations).
        (out_dir / "train_config.json").write_text(json.dumps(config, indent=2))
    start = time.time()
    if FLAGS.model == "vae":
        results = train_vaes(out_dir)
    elif FLAGS.model == "abs_margin":
        results = train_abs_margin(out_dir)
    else:
        results = train_baseline(out_dir)
    summary = {"config": config, "wall_time_s_this_invocation": time.time() - start, "results": results}
    (out_dir / "summary.json").write_text(json.dumps(summary, indent=2))
    logging.info("done in %.0f s; summary in %s", time.time() - start, out_dir / "summary.json")


if __name__ == "__main__":
    app.run(main)
