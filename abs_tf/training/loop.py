"""Resumable, deterministic training loop shared by every model of the project.

`fit` runs epochs of a `train_step`, shows a Keras `Progbar`, writes TensorBoard
summaries, and saves a `tf.train.Checkpoint` (model, optimizer, epoch) after every epoch.
Run the same command again after a kill and it continues from the last finished epoch.
Batch order and per-step randomness are functions of (seed, epoch, step) only, so a resumed
run sees exactly what an uninterrupted one would have seen (`abs_tf.training.determinism`).
The training configuration is kept beside the checkpoints (``run.json``): resuming with another
one is refused. A corrupt newest checkpoint is named and skipped for the newest intact one.
"""

from __future__ import annotations

import dataclasses
import math
import re
import sys
import time
import warnings
from pathlib import Path
from typing import Callable, Dict, Iterable, Optional

import keras
import numpy as np
import tensorflow as tf

from abs_tf.training import run_dir

RUN_FILE = "run.json"
PROGRESS_FILE = "progress.json"  # per-epoch metrics and wall times, kept with the checkpoints
STATE_FILE = "checkpoint"  # tf.train.CheckpointManager's list of checkpoints
_PREFIX = re.compile(r"^ckpt-(\d+)\.index$")


class CheckpointWarning(UserWarning):
    """A checkpoint (or the checkpoint state file) could not be read and was skipped."""


def epoch_batches(num_examples: int, batch_size: int, seed: int, epoch: int):
    """Index batches of one epoch: a permutation that depends only on (seed, epoch).

    The last partial batch is kept. Returns a list of int64 index arrays.
    """
    order = np.random.default_rng([seed, epoch]).permutation(num_examples)
    return [order[i:i + batch_size] for i in range(0, num_examples, batch_size)]


@dataclasses.dataclass
class FitResult:
    epochs_run: int          # epochs run by this call (0 if it resumed a finished run)
    resumed_from_epoch: int  # epochs already done when this call started
    history: Dict[str, list]  # per-epoch mean of every metric, for every epoch of the run (all invocations)
    train_wall_time_s: float  # seconds spent in the run's epochs, all invocations together


def fit(*, model, optimizer, train_step: Callable, make_batches: Callable[[int], Iterable],
        epochs: int, checkpoint_dir, config: Optional[dict] = None, summary_dir=None,
        epoch_end: Optional[Callable] = None, verbose: int = 1, max_to_keep: int = 2) -> FitResult:
    """Trains with per-epoch checkpoints and automatic resume.

    Args:
      model, optimizer: tracked by the checkpoint (Keras 3 objects are trackable).
      train_step: ``train_step(batch, global_step) -> dict[str, scalar tensor]``; it applies
        the update itself (typically a `tf.function`).
      make_batches: ``make_batches(epoch) -> list of batches``; must depend only on the
        epoch number (and fixed seeds) so that resume is exact.
      epochs: total number of epochs (not "more epochs").
      checkpoint_dir: where `tf.train.CheckpointManager` keeps its checkpoints.
      config: the training configuration (JSON-ready dict; ``epochs`` is added). Kept in
        ``<checkpoint_dir>/run.json``; resuming checkpoints made with another configuration
        raises `run_dir.ConfigMismatchError` naming each differing value.
      summary_dir: TensorBoard log directory, or None.
      epoch_end: optional ``epoch_end(epoch, writer_or_None) -> dict`` for evaluation
        metrics and image summaries; its scalars join the epoch's history.
      verbose: 1 shows a Keras Progbar per epoch (one line per epoch when stdout is not a
        terminal), 0 is silent.

    A newest checkpoint that cannot be read (truncated data, empty index, garbage state file)
    is named in a `CheckpointWarning` and the newest intact one is used instead.

    The per-epoch metrics and wall times are kept beside the checkpoints (``progress.json``),
    so the result covers every epoch of the run, however many invocations it took.
    """
    checkpoint_dir = Path(checkpoint_dir)
    config = {**(config or {}), "epochs": epochs}
    epoch_var = tf.Variable(0, dtype=tf.int64, trainable=False, name="epoch")
    step_var = tf.Variable(0, dtype=tf.int64, trainable=False, name="global_step")
    checkpoint = tf.train.Checkpoint(model=model, optimizer=optimizer, epoch=epoch_var, step=step_var)
    run_file = checkpoint_dir / RUN_FILE
    if _checkpoint_prefixes(checkpoint_dir) and run_file.is_file():
        # E.g. a learning-rate schedule is sized by the total epochs; resuming with another
        # configuration would silently continue on a different curve.
        run_dir.check_same_config(run_dir.read_json(run_file), config, run_file)
    restore_newest_intact(checkpoint, checkpoint_dir)
    checkpoint_dir.mkdir(parents=True, exist_ok=True)
    run_dir.write_json(run_file, config)
    manager = tf.train.CheckpointManager(checkpoint, str(checkpoint_dir), max_to_keep=max_to_keep)
    start_epoch = int(epoch_var.numpy())
    history, epoch_times = _progress_until(checkpoint_dir / PROGRESS_FILE, start_epoch)
    if verbose == 1 and not (hasattr(sys.stdout, "isatty") and sys.stdout.isatty()):
        verbose = 2  # a log file gets one line per epoch, not one per batch
    writer = tf.summary.create_file_writer(str(summary_dir)) if summary_dir else None
    for epoch in range(start_epoch, epochs):
        epoch_start = time.time()
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
        epoch_times.append(time.time() - epoch_start)
        # Before the checkpoint: a kill in between leaves the progress one epoch ahead, which the
        # resume truncates, never behind.
        run_dir.write_json(checkpoint_dir / PROGRESS_FILE, {"history": history, "epoch_wall_time_s": epoch_times})
        epoch_var.assign(epoch + 1)
        manager.save(checkpoint_number=epoch + 1)
    return FitResult(epochs_run=max(0, epochs - start_epoch), resumed_from_epoch=start_epoch, history=history,
                     train_wall_time_s=float(sum(epoch_times)))


def _progress_until(path: Path, epochs_done: int):
    """The recorded per-epoch history and wall times of the first ``epochs_done`` epochs."""
    if not path.is_file() or epochs_done == 0:
        return {}, []
    progress = run_dir.read_json(path)
    history = {k: list(v[:epochs_done]) for k, v in progress.get("history", {}).items()}
    return history, list(progress.get("epoch_wall_time_s", [])[:epochs_done])


def _checkpoint_prefixes(checkpoint_dir: Path):
    """The checkpoints in ``checkpoint_dir``, newest first, found from their files (not from the
    state file, which may be damaged): [(number, prefix path)]."""
    if not checkpoint_dir.is_dir():
        return []
    found = [(int(m.group(1)), checkpoint_dir / f"ckpt-{m.group(1)}")
             for m in (_PREFIX.match(p.name) for p in checkpoint_dir.iterdir()) if m]
    return sorted(found, reverse=True)


def _unreadable_part(prefix: Path) -> str:
    """Which file of checkpoint ``prefix`` is damaged: its index if TF cannot read it, else its data."""
    try:
        tf.train.load_checkpoint(str(prefix))
    except (tf.errors.OpError, ValueError):
        return prefix.name + ".index"
    data = sorted(p.name for p in prefix.parent.glob(prefix.name + ".data-*"))
    return ", ".join(data) if data else prefix.name + ".data-* (missing)"


def restore_newest_intact(checkpoint: tf.train.Checkpoint, checkpoint_dir) -> Optional[Path]:
    """Restores the newest checkpoint of ``checkpoint_dir`` that can be read; returns its prefix
    (None if there is none: a fresh start).

    Each damaged checkpoint skipped, and a damaged state file, gets a `CheckpointWarning`
    naming the file. The state file is rewritten to list the intact checkpoints. Raises
    RuntimeError naming the files if checkpoints exist but none can be read.
    """
    checkpoint_dir = Path(checkpoint_dir)
    prefixes = _checkpoint_prefixes(checkpoint_dir)
    state = checkpoint_dir / STATE_FILE
    # TF reads a garbage state file as "no checkpoint" (a silent restart from scratch).
    state_damaged = bool(prefixes) and tf.train.get_checkpoint_state(str(checkpoint_dir)) is None
    if state_damaged:
        warnings.warn(f"{state} is unreadable or missing; using the checkpoint files found in {checkpoint_dir} "
                      f"instead", CheckpointWarning, stacklevel=3)
    skipped = []
    for number, prefix in prefixes:
        try:
            checkpoint.restore(str(prefix)).assert_existing_objects_matched()
        except (tf.errors.OpError, IndexError, ValueError, AssertionError) as e:
            part = _unreadable_part(prefix)
            skipped.append(part)
            warnings.warn(f"checkpoint {checkpoint_dir / part} is damaged ({type(e).__name__}: {e}); falling back "
                          f"to an older checkpoint", CheckpointWarning, stacklevel=3)
            continue
        if skipped or state_damaged:  # so that the CheckpointManager sees the intact ones only
            intact = [str(p) for n, p in prefixes if n <= number]
            tf.compat.v1.train.update_checkpoint_state(str(checkpoint_dir), str(prefix), intact[::-1])
        if skipped:
            warnings.warn(f"resuming from {prefix} (epoch {number}) after skipping the damaged {skipped}",
                          CheckpointWarning, stacklevel=3)
        return prefix
    if prefixes:
        raise RuntimeError(f"no checkpoint in {checkpoint_dir} can be read (damaged: {skipped}); delete the "
                           f"directory to train from scratch")
    return None


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
