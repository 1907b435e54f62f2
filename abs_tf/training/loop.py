"""Resumable, deterministic training loop shared by every model of the project.

`fit` runs epochs of a `train_step`, shows a Keras `Progbar`, writes TensorBoard
summaries, and saves a `tf.train.Checkpoint` (model, optimizer, epoch) after every epoch.
Run the same command again after a kill and it continues from the last finished epoch.
Batch order and per-step randomness are functions of (seed, epoch, step) only, so a resumed
run sees exactly what an uninterrupted one would have seen.
"""

from __future__ import annotations

import dataclasses
import json
import math
import sys
from pathlib import Path
from typing import Callable, Dict, Iterable, Optional

import keras
import numpy as np
import tensorflow as tf


def set_global_determinism(seed: int) -> None:
    """Seeds Python, numpy and TF and makes TF ops deterministic."""
    keras.utils.set_random_seed(seed)
    tf.config.experimental.enable_op_determinism()


def epoch_batches(num_examples: int, batch_size: int, seed: int, epoch: int):
    """Index batches of one epoch: a permutation that depends only on (seed, epoch).

    The last partial batch is kept. Returns a list of int64 index arrays.
    """
    order = np.random.default_rng([seed, epoch]).permutation(num_examples)
    return [order[i:i + batch_size] for i in range(0, num_examples, batch_size)]


def step_seed(seed: int, step) -> tf.Tensor:
    """A stateless-RNG seed (int32 [2]) for global step `step` of a run with `seed`."""
    return tf.stack([tf.constant(seed, tf.int32), tf.cast(step, tf.int32)])


@dataclasses.dataclass
class FitResult:
    epochs_run: int          # epochs run by this call (0 if it resumed a finished run)
    resumed_from_epoch: int  # epochs already done when this call started
    history: Dict[str, list]  # per-epoch mean of every metric, for the epochs run here


def fit(*, model, optimizer, train_step: Callable, make_batches: Callable[[int], Iterable],
        epochs: int, checkpoint_dir, summary_dir=None, epoch_end: Optional[Callable] = None,
        verbose: int = 1, max_to_keep: int = 2) -> FitResult:
    """Trains with per-epoch checkpoints and automatic resume.

    Args:
      model, optimizer: tracked by the checkpoint (Keras 3 objects are trackable).
      train_step: ``train_step(batch, global_step) -> dict[str, scalar tensor]``; it applies
        the update itself (typically a `tf.function`).
      make_batches: ``make_batches(epoch) -> list of batches``; must depend only on the
        epoch number (and fixed seeds) so that resume is exact.
      epochs: total number of epochs (not "more epochs").
      checkpoint_dir: where `tf.train.CheckpointManager` keeps its checkpoints.
      summary_dir: TensorBoard log directory, or None.
      epoch_end: optional ``epoch_end(epoch, writer_or_None) -> dict`` for evaluation
        metrics and image summaries; its scalars join the epoch's history.
      verbose: 1 shows a Keras Progbar per epoch (one line per epoch when stdout is not a
        terminal), 0 is silent.
    """
    epoch_var = tf.Variable(0, dtype=tf.int64, trainable=False, name="epoch")
    step_var = tf.Variable(0, dtype=tf.int64, trainable=False, name="global_step")
    checkpoint = tf.train.Checkpoint(model=model, optimizer=optimizer, epoch=epoch_var, step=step_var)
    manager = tf.train.CheckpointManager(checkpoint, str(checkpoint_dir), max_to_keep=max_to_keep)
    run_file = Path(checkpoint_dir) / "run.json"
    if manager.latest_checkpoint:
        # A learning-rate schedule is sized by the total epochs; resuming with another total
        # would silently continue on a different curve.
        if run_file.is_file():
            saved = json.loads(run_file.read_text()).get("epochs")
            if saved is not None and saved != epochs:
                raise ValueError(
                    f"{checkpoint_dir} holds a run of {saved} epochs; resuming it with epochs={epochs} would "
                    f"change its schedule. Use the same --epochs, or a new output directory.")
        checkpoint.restore(manager.latest_checkpoint).assert_existing_objects_matched()
    Path(checkpoint_dir).mkdir(parents=True, exist_ok=True)
    run_file.write_text(json.dumps({"epochs": epochs}))
    start_epoch = int(epoch_var.numpy())
    if verbose == 1 and not (hasattr(sys.stdout, "isatty") and sys.stdout.isatty()):
        verbose = 2  # a log file gets one line per epoch, not one per batch
    writer = tf.summary.create_file_writer(str(summary_dir)) if summary_dir else None
    history: Dict[str, list] = {}
    for epoch in range(start_epoch, epochs):
        batches = list(make_batches(epoch))
        bar = keras.utils.Progbar(len(batches), verbose=verbose, unit_name="batch")
        sums: Dict[str, float] = {}
        counts = 0
        for i, batch in enumerate(batches):
            metrics = train_step(batch, step_var)
            step_var.assign_add(1)
            values = {k: float(v) for k, v in metrics.items()}
            if not all(math.isfinite(v) for v in values.values()):
                raise FloatingPointError(
                    f"non-finite training metrics at epoch {epoch + 1}, step {int(step_var.numpy())}: "
                    f"{values}; the last checkpoint (epoch {epoch}) is intact")
            for k, v in values.items():
                sums[k] = sums.get(k, 0.0) + v
            counts += 1
            bar.update(i + 1, values=list(values.items()), finalize=False)
            if writer is not None and int(step_var.numpy()) % 20 == 0:
                with writer.as_default(step=int(step_var.numpy())):
                    for k, v in values.items():
                        tf.summary.scalar(f"train/{k}", v)
        epoch_metrics = {f"train/{k}": v / max(counts, 1) for k, v in sums.items()}
        if epoch_end is not None:
            if writer is not None:
                with writer.as_default(step=epoch + 1):
                    extra = epoch_end(epoch, writer) or {}
            else:
                extra = epoch_end(epoch, None) or {}
            epoch_metrics.update({k: float(v) for k, v in extra.items()})
        if writer is not None:
            with writer.as_default(step=epoch + 1):
                for k, v in epoch_metrics.items():
                    tf.summary.scalar(f"epoch/{k}", v)
            writer.flush()
        bar.update(len(batches), values=[(k, v) for k, v in epoch_metrics.items() if not k.startswith("train/")],
                   finalize=True)
        for k, v in epoch_metrics.items():
            history.setdefault(k, []).append(v)
        epoch_var.assign(epoch + 1)
        manager.save(checkpoint_number=epoch + 1)
    return FitResult(epochs_run=max(0, epochs - start_epoch), resumed_from_epoch=start_epoch, history=history)


def image_grid(images, columns: int = 8):
    """Tiles [N,28,28,1] images into one [1, rows*28, columns*28, 1] image for TensorBoard."""
    images = np.asarray(images)
    n = len(images)
    rows = max(1, math.ceil(n / columns))
    grid = np.zeros((rows * 28, columns * 28, 1), np.float32)
    for i, img in enumerate(images):
        r, c = divmod(i, columns)
        grid[r * 28:(r + 1) * 28, c * 28:(c + 1) * 28] = img
    return grid[None]

