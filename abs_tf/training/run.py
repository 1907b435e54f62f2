"""The training procedures as whole runs: one entry per procedure, from a configuration to a
finished run directory. `train.py` maps its flags to a configuration and calls one of these.

    train_vae_run(VAETrainingConfig, out_dir, data_dir)            the class VAEs of ABS
    fine_tune_margin_run(MarginFineTuneConfig, out_dir, data_dir)  class-margin fine-tuning
    train_classifier_run(ClassifierTrainingConfig, out_dir, data_dir)  the baselines

Each entry opens the run directory (refusing one that holds a run of another training
configuration, `run_dir.open_run`), seeds the process-wide RNGs at a visible point
(`determinism.seed_globals`, before building models), trains or resumes, and writes
``summary.json``. Run the same call again after an interruption: it resumes.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Optional

from abs_tf import data, registry
from abs_tf.constants import NUM_CLASSES
from abs_tf.models import cnn, weights_identity
from abs_tf.models.abs import vae_weights
from abs_tf.run_info import git_commit
from abs_tf.training import classifier, margin, run_dir, vae
from abs_tf.training.adversarial import robust_accuracy
from abs_tf.training.config import ClassifierTrainingConfig, MarginFineTuneConfig, VAETrainingConfig
from abs_tf.training.determinism import seed_globals

log = logging.getLogger(__name__)


def default_out_dir(model: str, fine_tune: Optional[str] = None) -> str:
    """``runs/abs_vae`` for the VAEs, ``runs/abs_margin`` for their margin fine-tuning,
    ``runs/<model>`` for a baseline."""
    if fine_tune is not None:
        return "runs/abs_margin"
    return "runs/abs_vae" if model == "vae" else f"runs/{model}"


def _invocation(command: str, data_dir) -> dict:
    return {"command": command, "git_commit": git_commit(), "data_dir": None if data_dir is None else str(data_dir)}


def _training_split(data_dir, train_images: int):
    x, y = data.load_mnist("train", data_dir)
    return (x[:train_images], y[:train_images]) if train_images else (x, y)


def train_vae_run(config: VAETrainingConfig, out_dir, data_dir=None, *, command: str = "",
                  verbose: int = 1) -> dict:
    """Trains (or resumes) the class VAEs ``config.classes`` in ``out_dir``; classes already
    finished there are skipped. Returns {class: record} of every finished class of the run."""
    out_dir = Path(out_dir)
    run_dir.open_run(out_dir, config.training_record(), _invocation(command, data_dir))
    start = time.time()
    train_x, train_y = _training_split(data_dir, config.train_images)
    test_x, test_y = data.load_mnist("test", data_dir)
    for c in config.classes:
        weights = out_dir / vae_weights.WEIGHTS_PATTERN.format(c)
        if run_dir.finished_record(out_dir / vae.RECORD_PATTERN.format(c), [weights]) is not None:
            log.info("class %d already trained (%s); skipping", c, weights)
            continue
        count = int((train_y == c).sum())
        if count == 0:
            raise ValueError(f"no training image of class {c} among the first {config.train_images} "
                             f"(train_images); use more, or leave train_images at 0 (all)")
        log.info("training the VAE of class %d on %d images", c, count)
        seed_globals(config.class_seed(c))  # the initial weights
        record = vae.train_class_vae(vae.new_class_vae(config, c), train_x[train_y == c], test_x[test_y == c],
                                     class_id=c, out_dir=out_dir, config=config, verbose=verbose)
        log.info("class %d: test loss %.5f, reconstruction MSE %.5f", c, record["loss"], record["reconstruction_mse"])
    results = _vae_records(out_dir)
    run_dir.write_summary(out_dir, results, time.time() - start)
    return results


def _vae_records(out_dir: Path) -> dict:
    records = {}
    for c in range(NUM_CLASSES):
        record = run_dir.finished_record(out_dir / vae.RECORD_PATTERN.format(c),
                                         [out_dir / vae_weights.WEIGHTS_PATTERN.format(c)])
        if record is not None:
            records[c] = record
    return records


def fine_tune_margin_run(config: MarginFineTuneConfig, out_dir, data_dir=None, *, command: str = "",
                         verbose: int = 1) -> dict:
    """Fine-tunes the decoders of the ten VAEs in ``config.init_from`` with the class margin
    (resumable) and writes all ten ``vae_{c}.weights.h5`` (encoders unchanged) with per-class
    records ``vae_{c}.json`` to ``out_dir``, in the layout of a VAE run. Returns the margin record."""
    out_dir = Path(out_dir)
    run_dir.open_run(out_dir, config.training_record(), _invocation(command, data_dir))
    start = time.time()
    train_x, train_y = _training_split(data_dir, config.train_images)
    seed_globals(config.seed)
    vaes = vae_weights.load_vaes(config.init_from)
    record = margin.fine_tune_margin(vaes, train_x, train_y, out_dir=out_dir, config=config, verbose=verbose)
    log.info("class margin: pool of %d training images; %s", record["pool_size"],
             {k: v[-1] for k, v in record["history"].items()})
    test_x, test_y = data.load_mnist("test", data_dir)
    for c, class_vae in enumerate(vaes):
        vae_weights.save_vae_weights(class_vae, out_dir / vae_weights.WEIGHTS_PATTERN.format(c), c)
        # The test metrics go through the (unchanged) encoder, so they lag the tuned decoder.
        run_dir.write_json(out_dir / vae.RECORD_PATTERN.format(c), dict(
            vae.evaluate_vae(class_vae, test_x[test_y == c]), class_id=c, epochs=config.epochs,
            fine_tune="class_margin", init_from=config.init_from))
    run_dir.write_summary(out_dir, record, time.time() - start)
    return record


def classifier_weights_file(init_from) -> Path:
    """``init_from`` as a weights file: itself, or ``<dir>/model.weights.h5`` for a directory."""
    path = Path(init_from)
    path = path / cnn.WEIGHTS_FILE if path.is_dir() else path
    if not path.is_file():
        raise FileNotFoundError(f"init_from: no weights file {path}")
    return path


def train_classifier_run(config: ClassifierTrainingConfig, out_dir, data_dir=None, *, command: str = "",
                         verbose: int = 1) -> dict:
    """Trains (or resumes) baseline ``config.model`` in ``out_dir``; then, for adversarial
    training, its robust accuracies (`ClassifierTrainingConfig`'s evaluation fields). A rerun
    of a finished run re-evaluates it. Returns the record (``metrics.json``)."""
    out_dir = Path(out_dir)
    evaluation = {k: v for k, v in config.record().items() if k in config.EVALUATION_FIELDS}
    run_dir.open_run(out_dir, config.training_record(), {**evaluation, **_invocation(command, data_dir)})
    start = time.time()
    train_x, train_y = _training_split(data_dir, config.train_images)
    test_x, test_y = data.load_mnist("test", data_dir)
    seed_globals(config.seed)  # the initial weights
    model = registry.build_model(config.model)
    if config.init_from:
        init = classifier_weights_file(config.init_from)
        weights_identity.check(init, model=config.model, architecture=model.architecture, allow_missing=False)
        model.load_weights(init)
        log.info("starting from the weights in %s", init)
    log.info("training %s (%d parameters) on %d images", config.model, model.count_params(), len(train_x))
    record = classifier.train_classifier(model, train_x, train_y, test_x, test_y, out_dir=out_dir, config=config,
                                         verbose=verbose)
    log.info("%s: test accuracy %.4f (10000 images)", config.model, record["test_accuracy"])
    if config.adversarial:
        record = run_dir.update_record(out_dir / classifier.METRICS_FILE,
                                       _robust_figures(model, test_x, test_y, config))
    run_dir.write_summary(out_dir, record, time.time() - start)
    return record


def _robust_figures(model, test_x, test_y, config: ClassifierTrainingConfig) -> dict:
    """PGD-40 and PGD-100 x 10 restarts accuracies (eps 0.3, step 0.01) on the first test images."""
    figures = {}
    for name, n, steps, restarts in (("pgd40", config.robust_eval_images, 40, 1),
                                     ("pgd100x10", config.pgd100_eval_images, 100, 10)):
        if n:
            t = time.time()
            figures[f"{name}_accuracy_first{n}"] = robust_accuracy(model, test_x[:n], test_y[:n], steps=steps,
                                                                   restarts=restarts, seed=config.seed)
            figures[f"{name}_eval_wall_time_s"] = time.time() - t
            log.info("%s accuracy on the first %d test images: %.4f", name, n, figures[f"{name}_accuracy_first{n}"])
    return figures
