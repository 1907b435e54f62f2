"""Training the ten class VAEs of ABS (each on its own class's training images only)."""

from __future__ import annotations

import math
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from abs_tf.models.abs.vae import ClassVAE, abs_loss, build_vae
from abs_tf.models.abs.vae_weights import WEIGHTS_PATTERN, load_vae_weights, save_vae_weights
from abs_tf.training import loop, run_dir
from abs_tf.training.augment import random_affine
from abs_tf.training.config import VAETrainingConfig
from abs_tf.training.determinism import step_seed

RECORD_PATTERN = "vae_{}.json"


def evaluate_vae(vae: ClassVAE, images, batch_size: int = 1000):
    """Deterministic test metrics of one VAE on images [N,28,28,1].

    Returns dict: ``loss`` (mean ABS loss with encoder mean -> decoder, per pixel, with the
    test-time prior weight 1 whatever ``vae.beta`` was used for training, so that runs with
    different training betas are comparable) and ``reconstruction_mse`` (mean squared pixel
    error of that reconstruction).
    """
    losses, mses = [], []
    for i in range(0, len(images), batch_size):
        x = tf.convert_to_tensor(images[i:i + batch_size])
        mean = vae.posterior(x).mean()
        rec = vae.decode(mean)
        losses.append(abs_loss(x, rec, mean, beta=1.0).numpy())
        mses.append(tf.reduce_mean(tf.square(x - rec), axis=[1, 2, 3]).numpy())
    return {"loss": float(np.mean(np.concatenate(losses))),
            "reconstruction_mse": float(np.mean(np.concatenate(mses)))}


def new_class_vae(config: VAETrainingConfig, class_id: int) -> ClassVAE:
    """The VAE that training of class ``class_id`` starts from: freshly initialised (from the
    global RNGs: call `determinism.seed_globals` first) with the config's beta, then loaded
    from ``config.init_from`` if given (identity-checked)."""
    vae = build_vae(beta=config.beta)
    if config.init_from is not None:
        load_vae_weights(vae, Path(config.init_from) / WEIGHTS_PATTERN.format(class_id), class_id)
    return vae


def train_class_vae(vae: ClassVAE, train_images, test_images, *, class_id: int, out_dir,
                    config: VAETrainingConfig, verbose: int = 1) -> dict:
    """Trains (or resumes) one class VAE in place.

    Args:
      vae: from `new_class_vae` (built with ``config.beta``).
      train_images: [N,28,28,1] in [0,1], the class's training images.
      test_images: [M,28,28,1], the class's test images, for per-epoch evaluation.
      out_dir: run directory; uses ``ckpt/class_{c}`` and ``tb/class_{c}`` and, when done,
        writes ``vae_{c}.weights.h5`` (stamped with its identity) and the record ``vae_{c}.json``.
      config: epochs, batch size, learning rate, seed (per class: ``config.class_seed``),
        augmentation. A checkpoint in ``out_dir`` (resume) takes precedence over the weights
        ``vae`` starts with; one made with another configuration is refused.
    Returns: the record (test metrics, history, wall time).
    """
    out_dir = Path(out_dir)
    class_seed = config.class_seed(class_id)
    steps_per_epoch = math.ceil(len(train_images) / config.batch_size)
    # Cosine decay over the whole run; the schedule reads the optimizer's checkpointed step
    # counter, so a resumed run continues on the same curve.
    schedule = keras.optimizers.schedules.CosineDecay(config.learning_rate, config.epochs * steps_per_epoch,
                                                      alpha=0.05)
    optimizer = keras.optimizers.Adam(learning_rate=schedule)
    optimizer.build(vae.trainable_variables)
    train_x = tf.constant(train_images)
    preview = tf.constant(test_images[:16])

    @tf.function
    def train_step(idx, step):
        x = tf.gather(train_x, idx)
        s = step_seed(class_seed, step)
        if config.augment:
            x = random_affine(x, tf.random.experimental.stateless_fold_in(s, 1),
                              probability=config.augment_probability, max_shift=config.augment_max_shift)
        with tf.GradientTape() as tape:
            terms = vae.loss_terms(x, seed=tf.random.experimental.stateless_fold_in(s, 2), training=True)
            loss = tf.reduce_mean(terms["loss"])
        grads = tape.gradient(loss, vae.trainable_variables)
        optimizer.apply_gradients(zip(grads, vae.trainable_variables))
        return {"loss": loss, "distortion": tf.reduce_mean(terms["distortion"]),
                "rate": tf.reduce_mean(terms["rate"])}

    def epoch_end(epoch, writer):
        metrics = evaluate_vae(vae, test_images)
        if writer is not None:
            rec = vae(preview)
            tf.summary.image("reconstructions/top_input_bottom_reconstruction",
                             loop.image_grid(np.concatenate([preview.numpy(), rec.numpy()])), max_outputs=1)
        return {f"test/{k}": v for k, v in metrics.items()}

    result = loop.fit(
        model=vae, optimizer=optimizer, train_step=train_step,
        make_batches=lambda e: loop.epoch_batches(len(train_images), config.batch_size, class_seed, e),
        epochs=config.epochs, checkpoint_dir=out_dir / "ckpt" / f"class_{class_id}",
        config={**config.training_record(), "class_id": class_id},
        summary_dir=out_dir / "tb" / f"class_{class_id}", epoch_end=epoch_end, verbose=verbose)
    metrics = dict(evaluate_vae(vae, test_images), class_id=class_id, epochs=config.epochs)
    save_vae_weights(vae, out_dir / WEIGHTS_PATTERN.format(class_id), class_id)
    return run_dir.record_unit(out_dir / RECORD_PATTERN.format(class_id), result, metrics)
