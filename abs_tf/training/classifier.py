"""Training the feed-forward baselines (CNN, binary CNN, Madry et al., substitute) with the
shared resumable loop `abs_tf.training.loop.fit`, optionally with L-infinity adversarial training.

Outputs in ``out_dir``: ``ckpt/`` (per-epoch checkpoints; rerunning resumes), ``tb/``
(TensorBoard: ``train/loss``, ``train/accuracy``, ``epoch/test/accuracy`` and, for adversarial
training, ``epoch/test/pgd40_accuracy_first{n}``), and when done ``model.weights.h5`` (stamped
with its identity) plus the record ``metrics.json``.
"""

from __future__ import annotations

import math
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from abs_tf.models import cnn, weights_identity
from abs_tf.training import adversarial, loop, run_dir
from abs_tf.training.augment import random_affine
from abs_tf.training.config import SCHEDULES, ClassifierTrainingConfig
from abs_tf.training.determinism import step_seed

METRICS_FILE = "metrics.json"


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
                     out_dir, config: ClassifierTrainingConfig, verbose: int = 1) -> dict:
    """Trains (or resumes) a classifier with cross-entropy and Adam.

    Args:
      model: images [B,28,28,1] in [0,1] -> logits [B,10] (e.g. `cnn.ImageClassifier`), built
        (and initialised: `determinism.seed_globals` before building it).
      train_images / test_images: float32 [N,28,28,1] in [0,1]; *_labels: int [N].
      out_dir: run directory (see module docstring).
      config: epochs, batch size, schedule, seed, augmentation (`augment.random_affine` on
        30 % of the images, before any adversarial perturbation), adversarial training (each
        batch replaced by its PGD adversarial, no gradient through the attack) and the per-epoch
        PGD-40 monitor on the first ``monitor_images`` test images.
    Returns: the record: ``test_accuracy`` on all test images and on the first 1000, history,
    wall time.

    Determinism: batch order, augmentation and PGD's random starts depend only on (seed,
    step) (and the images), so an interrupted run resumes exactly.
    """
    out_dir = Path(out_dir)
    train_x = tf.constant(train_images)
    train_y = tf.constant(np.asarray(train_labels, np.int64))
    steps_per_epoch = math.ceil(len(train_images) / config.batch_size)
    total_steps = config.epochs * steps_per_epoch
    optimizer = keras.optimizers.Adam(learning_rate=make_schedule(config.schedule, config.learning_rate, total_steps))
    optimizer.build(model.trainable_variables)
    attack = adversarial.pgd(config.adv_eps, config.adv_step_size, config.adv_steps) if config.adversarial else None

    @tf.function(input_signature=[tf.TensorSpec([None], tf.int64), tf.TensorSpec([], tf.int64)])
    def step(idx, global_step):
        x = tf.gather(train_x, idx)
        y = tf.gather(train_y, idx)
        s = step_seed(config.seed, global_step)
        if config.augment:
            x = random_affine(x, tf.random.experimental.stateless_fold_in(s, 7))
        if attack is not None:
            attack_seed = tf.random.experimental.stateless_fold_in(s, 8)[0]
            x = tf.stop_gradient(adversarial.adversarial_batch(attack, model, x, y, config.adv_eps, attack_seed))
        with tf.GradientTape() as tape:
            logits = model(x, training=True)
            loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(y, logits))
        grads = tape.gradient(loss, model.trainable_variables)
        optimizer.apply_gradients(zip(grads, model.trainable_variables))
        acc = tf.reduce_mean(tf.cast(tf.argmax(logits, axis=1) == y, tf.float32))
        return {"loss": loss, "accuracy": acc}

    def train_step(idx, global_step):
        return step(tf.convert_to_tensor(idx, tf.int64), tf.convert_to_tensor(global_step))

    def epoch_end(epoch, writer):
        metrics = {"test/accuracy": cnn.accuracy(model, test_images, test_labels)}
        n = config.monitor_images
        if attack is not None and n > 0:
            metrics[f"test/pgd40_accuracy_first{n}"] = adversarial.robust_accuracy(
                model, test_images[:n], test_labels[:n], seed=config.seed + epoch)
        return metrics

    result = loop.fit(
        model=model, optimizer=optimizer, train_step=train_step,
        make_batches=lambda e: loop.epoch_batches(len(train_images), config.batch_size, config.seed, e),
        epochs=config.epochs, checkpoint_dir=out_dir / "ckpt", config=config.training_record(),
        summary_dir=out_dir / "tb", epoch_end=epoch_end, verbose=verbose)
    correct = np.argmax(cnn.predict_logits(model, test_images), axis=1) == np.asarray(test_labels)
    metrics = {"test_accuracy": float(np.mean(correct)), "test_accuracy_first1000": float(np.mean(correct[:1000])),
               "epochs": config.epochs}
    save_classifier_weights(model, out_dir / cnn.WEIGHTS_FILE, config.model)
    return run_dir.record_unit(out_dir / METRICS_FILE, result, metrics)


def save_classifier_weights(model, path, name: str) -> None:
    """Saves a classifier's weights and stamps the file with what it holds (registry name,
    architecture)."""
    model.save_weights(path)
    weights_identity.stamp(path, model=name, architecture=model.architecture)
