"""Training the feed-forward baselines (CNN, binary CNN, Madry et al., substitute) with the
shared resumable loop `abs_tf.training.loop.fit`, optionally with L-infinity adversarial training.

Outputs in ``out_dir``: ``ckpt/`` (per-epoch checkpoints; rerunning resumes), ``tb/``
(TensorBoard: ``train/loss``, ``train/accuracy``, ``epoch/test/accuracy`` and, for adversarial
training, ``epoch/test/pgd40_accuracy_first{n}``), and when done ``model.weights.h5`` plus
``metrics.json``.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Optional

import keras
import numpy as np
import tensorflow as tf

from abs_tf.training import adversarial as adversarial_training
from abs_tf.models import cnn
from abs_tf.training import loop as training
from abs_tf.training.vae import random_affine

WEIGHTS_FILE = "model.weights.h5"
METRICS_FILE = "metrics.json"
SCHEDULES = ("cosine", "triangular")


class TriangularSchedule(keras.optimizers.schedules.LearningRateSchedule):
    """Linear warm-up from 0 to ``peak`` at ``peak_fraction`` of ``total_steps``, then linear
    decay to 0 (the one-cycle schedule of Wong et al. 2020). Reads the optimizer's step, so a
    resumed run continues on the same curve."""

    def __init__(self, peak: float, total_steps: int, peak_fraction: float = 0.4):
        self.peak, self.total_steps, self.peak_fraction = float(peak), int(total_steps), float(peak_fraction)

    def __call__(self, step):
        t = tf.cast(step, tf.float32) + 1.0
        up = self.peak_fraction * self.total_steps
        rise = t / up
        fall = (self.total_steps - t) / (self.total_steps - up)
        return self.peak * tf.clip_by_value(tf.minimum(rise, fall), 0.0, 1.0)

    def get_config(self):
        return {"peak": self.peak, "total_steps": self.total_steps, "peak_fraction": self.peak_fraction}


def make_schedule(name: str, learning_rate: float, total_steps: int):
    """``"cosine"`` (decay to 5 %) or ``"triangular"`` (0 -> peak at 40 % -> 0)."""
    if name == "cosine":
        return keras.optimizers.schedules.CosineDecay(learning_rate, total_steps, alpha=0.05)
    if name == "triangular":
        return TriangularSchedule(learning_rate, total_steps)
    raise ValueError(f"unknown schedule {name!r}; choose one of {SCHEDULES}")


def train_classifier(model: keras.Model, train_images, train_labels, test_images, test_labels, *,
                     out_dir, epochs: int, batch_size: int = 100, learning_rate: float = 1e-3,
                     schedule: str = "cosine", seed: int = 0,
                     adversarial: Optional[adversarial_training.AdversarialConfig] = None,
                     augment: bool = False, monitor_images: int = 200, verbose: int = 1):
    """Trains (or resumes) a classifier with cross-entropy and Adam.

    Args:
      model: images [B,28,28,1] in [0,1] -> logits [B,10] (e.g. `cnn.ImageClassifier`), built.
      train_images / test_images: float32 [N,28,28,1] in [0,1]; *_labels: int [N].
      out_dir: run directory (see module docstring).
      adversarial: if given, each batch is replaced by its adversarial version (computed with
        the model in inference mode, no gradient through the attack), as in Madry et al.
      augment: light random zoom/rotation/shift of 30 % of the training images
        (`vae_training.random_affine`, stateless; before any adversarial perturbation).
      monitor_images: adversarial training only: per epoch, PGD-40 (eps 0.3, step 0.01,
        random start) accuracy on the first this-many test images, to see robustness grow
        and to catch catastrophic overfitting of FGSM training.
    Returns: (model, metrics dict with ``test_accuracy`` on all test images, wall time, ...).

    Determinism: batch order and the FGSM-RS random starts depend only on (seed, step). PGD's
    random start uses TF's global RNG; the training step is re-traced at every epoch after
    ``tf.random.set_seed(seed, epoch)``, so its random starts too are a function of (seed, epoch,
    step) and an interrupted run resumes exactly. (Clean and FGSM-RS training use only stateless
    randomness and trace the step once.)
    """
    out_dir = Path(out_dir)
    train_x = tf.constant(train_images)
    train_y = tf.constant(np.asarray(train_labels, np.int64))
    steps_per_epoch = math.ceil(len(train_images) / batch_size)
    optimizer = keras.optimizers.Adam(learning_rate=make_schedule(schedule, learning_rate, epochs * steps_per_epoch))
    optimizer.build(model.trainable_variables)

    def make_step():
        @tf.function(input_signature=[tf.TensorSpec([None], tf.int64), tf.TensorSpec([], tf.int64)])
        def step(idx, global_step):
            x = tf.gather(train_x, idx)
            y = tf.gather(train_y, idx)
            if augment:
                x = random_affine(x, tf.random.experimental.stateless_fold_in(
                    training.step_seed(seed, global_step), 7))
            if adversarial is not None:
                x = tf.stop_gradient(adversarial_training.adversarial_batch(
                    model, x, y, adversarial, training.step_seed(seed, global_step), global_step))
            with tf.GradientTape() as tape:
                logits = model(x, training=True)
                loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(y, logits))
            grads = tape.gradient(loss, model.trainable_variables)
            optimizer.apply_gradients(zip(grads, model.trainable_variables))
            acc = tf.reduce_mean(tf.cast(tf.argmax(logits, axis=1) == y, tf.float32))
            return {"loss": loss, "accuracy": acc}
        return step

    current = {"epoch": None, "step": None}

    reseed_every_epoch = adversarial is not None and adversarial.method == "pgd"

    def train_step(idx, global_step):
        global_step = tf.convert_to_tensor(global_step)
        epoch = int(global_step.numpy()) // steps_per_epoch
        if current["step"] is None or (reseed_every_epoch and epoch != current["epoch"]):
            tf.random.set_seed(seed * 100003 + epoch)
            current.update(epoch=epoch, step=make_step())
        return current["step"](tf.convert_to_tensor(idx, tf.int64), global_step)

    def epoch_end(epoch, writer):
        metrics = {"test/accuracy": cnn.accuracy(model, test_images, test_labels)}
        if adversarial is not None and monitor_images > 0:
            metrics[f"test/pgd40_accuracy_first{monitor_images}"] = adversarial_training.robust_accuracy(
                model, test_images[:monitor_images], test_labels[:monitor_images], seed=seed + epoch)
        return metrics

    start = time.time()
    result = training.fit(
        model=model, optimizer=optimizer, train_step=train_step,
        make_batches=lambda e: training.epoch_batches(len(train_images), batch_size, seed, e),
        epochs=epochs, checkpoint_dir=out_dir / "ckpt", summary_dir=out_dir / "tb",
        epoch_end=epoch_end, verbose=verbose)
    correct = np.argmax(cnn.predict_logits(model, test_images), axis=1) == np.asarray(test_labels)
    metrics = {
        "test_accuracy": float(np.mean(correct)),
        "test_accuracy_first1000": float(np.mean(correct[:1000])),
        "epochs": epochs, "resumed_from_epoch": result.resumed_from_epoch,
        "wall_time_s_this_invocation": time.time() - start,
        "history": result.history,
    }
    model.save_weights(out_dir / WEIGHTS_FILE)
    return model, metrics


def write_metrics(out_dir, metrics: dict) -> Path:
    """Merges ``metrics`` into ``out_dir/metrics.json`` (created if missing); returns its path."""
    path = Path(out_dir) / METRICS_FILE
    old = json.loads(path.read_text()) if path.is_file() else {}
    old.update(metrics)
    path.write_text(json.dumps(old, indent=2))
    return path


def write_provenance(run_dir, weights_dir, notes: str = "") -> Path:
    """Ships a finished run: copies ``run_dir/model.weights.h5`` to ``weights_dir`` and writes
    ``metrics.json`` (the run's metrics and training configuration) and ``PROVENANCE.md``
    (command, git commit, seed, wall time, accuracies; ``notes`` appended as Markdown).

    ``run_dir`` must hold ``metrics.json`` and ``train_config.json`` (or ``config.json``) as
    written by ``train.py``. Returns the path of ``PROVENANCE.md``.
    """
    import shutil

    run_dir, weights_dir = Path(run_dir), Path(weights_dir)
    metrics = json.loads((run_dir / METRICS_FILE).read_text())
    config_file = run_dir / "train_config.json"
    config = json.loads((config_file if config_file.is_file() else run_dir / "config.json").read_text())
    weights_dir.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(run_dir / WEIGHTS_FILE, weights_dir / WEIGHTS_FILE)
    (weights_dir / METRICS_FILE).write_text(json.dumps({**metrics, "train_config": config}, indent=2) + "\n")

    def pct(v):
        return f"{100 * v:.1f} %"

    lines = [
        f"# Provenance of `{weights_dir.name}/{WEIGHTS_FILE}`", "",
        "- Command (from the repository root, with `ABS_TF_DATA_DIR` set to the MNIST IDX directory):",
        f"  `{config['command']}`",
        f"- Git commit at run time: `{config['git_commit']}`",
        f"- Seed {config['seed']}; {config['epochs']} epochs, batch {config['batch_size']}, Adam, peak learning rate "
        f"{config['learning_rate']} ({config.get('schedule')} schedule), augmentation {'on' if config.get('augment') else 'off'}",
        f"- Training wall time: {metrics['train_wall_time_s'] / 60:.1f} min on a shared, heavily loaded 2-core CPU "
        "machine (no GPU; other training jobs ran at the same time)",
        f"- Clean test accuracy: {pct(metrics['test_accuracy'])} on all 10000 test images "
        f"({metrics['test_accuracy']:.4f}); {pct(metrics['test_accuracy_first1000'])} on the first 1000 "
        f"({metrics['test_accuracy_first1000']:.4f})",
    ]
    if config.get("init_from"):
        lines.insert(4, f"- Fine-tuned from the weights in `{config['init_from']}` (how those were made: see the "
                        "notes below)")
    for key, value in metrics.items():
        if key.startswith("pgd") and key.endswith("wall_time_s"):
            lines.append(f"- `{key}`: {value / 60:.1f} min")
        elif key.startswith("pgd"):
            lines.append(f"- `{key}` (cleverhans PGD, eps 0.3, step 0.01, random start): {pct(value)} ({value:.4f})")
    lines += ["- The same figures, the per-epoch history and the full configuration: `metrics.json`", ""]
    if notes:
        lines += [notes.rstrip(), ""]
    path = weights_dir / "PROVENANCE.md"
    path.write_text("\n".join(lines))
    return path
