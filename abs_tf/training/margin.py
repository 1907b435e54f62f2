"""Fine-tuning the ten class decoders of ABS with a class-margin term at searched latents.

Each VAE of ABS is trained on its own class only (`abs_tf.training.vae`). This stage starts
from such VAEs and moves the *decoders* so that, at the latents ABS's own search finds, the
true class's loss beats the other classes' by a margin. It is a discriminative fine-tuning of
the generative class models (the paper trains the VAEs generatively only; see README and
``weights/abs_vae/PROVENANCE.md``). The encoders are not used and stay as they are.

Per batch of training images x [B,28,28,1] with labels y:

1. latents z* [B,10,8] by the ABS search (best of ``margin_search_samples`` prior samples,
   then ``margin_search_steps`` iterations) with the current decoders (the search model is rebuilt
   every ``margin_refresh`` batches, so z* may come from decoders up to that many updates old);
2. class losses l[b,c] = (||x_b - sigmoid(G_c(z*_bc))||² + ½||z*_bc||²) / 784 through the Keras
   decoders in inference mode (BatchNorm with its running statistics, as at test time),
   differentiable with respect to the decoder weights; z* is held fixed (at a minimum of the
   search, the loss's derivative through z* vanishes);
3. loss = mean_b log(1 + sum_{c != y_b} exp(alpha (l[b,y_b] - l[b,c]))), a soft count of
   the classes that explain x at least as well as its own (alpha in 1/loss units: with losses
   of 0.01-0.03 per pixel, alpha 1000 makes margins above ~0.005 cost nothing).

Training images are restricted to a pool of confusable ones (best wrong class within
``margin_pool_ratio`` of the true class's loss under sample selection alone), since the loss and its
gradient vanish on the others.
"""

from __future__ import annotations

from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from abs_tf.constants import LATENT_DIM, NUM_CLASSES
from abs_tf.models.abs.vae import abs_loss
from abs_tf.training import loop, run_dir
from abs_tf.training.config import MarginFineTuneConfig

RECORD_FILE = "margin.json"


def class_losses(decoders, images, latents, beta: float = 1.0):
    """ABS class losses through Keras decoders (inference mode).

    decoders: ten Keras decoders; images [B,28,28,1] in [0,1]; latents [B,10,8].
    Returns [B,10] float32, per-pixel units (the negative of ABS's logits).
    """
    losses = []
    for c, decoder in enumerate(decoders):
        z = latents[:, c]
        rec = tf.sigmoid(decoder(tf.reshape(z, [-1, 1, 1, LATENT_DIM]), training=False))
        losses.append(abs_loss(images, rec, z, beta))
    return tf.stack(losses, 1)


def margin_loss(losses, labels, alpha: float):
    """Soft margin of the true class: losses [B,10], labels [B] int -> (loss [B], violations [B]).

    loss_b = log(1 + sum_{c != y} exp(alpha (l_y - l_c))); violations_b = 1.0 where some wrong
    class's loss is at most the true class's (an error of ABS at these latents), else 0.0.
    """
    onehot = tf.one_hot(labels, tf.shape(losses)[1], dtype=losses.dtype)
    own = tf.reduce_sum(losses * onehot, 1, keepdims=True)
    # The true class's own term, alpha*(l_y - l_y) = 0, is the "1 +" of the formula.
    loss = tf.reduce_logsumexp(alpha * (own - losses), 1)
    wrong = tf.where(onehot > 0, tf.fill(tf.shape(losses), np.inf), losses)
    violations = tf.cast(tf.reduce_min(wrong, 1) <= own[:, 0], tf.float32)
    return loss, violations


def loss_ratios(losses, labels):
    """Best wrong class's loss over the true class's: losses [N,10] (numpy), labels [N] -> [N].

    Below 1 the image is misclassified; close to 1 it is confusable."""
    rows = np.arange(len(labels))
    own = losses[rows, labels]
    wrong = np.array(losses, copy=True)
    wrong[rows, labels] = np.inf
    return wrong.min(1) / own


def confusable_pool(searcher, images, labels, ratio: float):
    """Indices of images whose best wrong class is within ``ratio`` of the true class's loss.

    searcher: an `abs_tf.models.abs.model.ABS` (typically with n_steps=1: sample selection only).
    images [N,28,28,1], labels [N]. Returns (int64 indices, ratios [N]).
    """
    ratios = loss_ratios(searcher.search(images)["losses"].numpy(), labels)
    return np.flatnonzero(ratios < ratio).astype(np.int64), ratios


class _Decoders(tf.Module):
    """The ten decoders as one trackable object (for `tf.train.Checkpoint`)."""

    def __init__(self, decoders):
        super().__init__(name="decoders")
        self.decoders = list(decoders)


def fine_tune_margin(vaes, images, labels, *, out_dir, config: MarginFineTuneConfig, verbose: int = 1) -> dict:
    """Fine-tunes the decoders of ten class VAEs in place (resumable); see the module docstring.

    Args:
      vaes: ten `ClassVAE` (class order 0..9), e.g. from `vae.load_vaes(config.init_from)`.
      images, labels: training images [N,28,28,1] in [0,1] and their int labels [N].
      out_dir: run directory: ``ckpt/margin`` (per-epoch checkpoints), ``tb/margin``,
        ``margin_pool.npy`` (the pool's indices, kept for a resumed run) and, when done, the
        record ``margin.json``.
      config: epochs (passes over the pool), batch size (images per update), Adam learning
        rate, seed (batch order), the margin sharpness and pool ratio (see the module
        docstring), the training-time search (latent samples, iterations) and how many updates
        it may lag behind the decoders.
    Returns: the record (pool size, per-epoch history, wall time).
    """
    from abs_tf.models.abs.model import ABS, latent_samples

    if len(vaes) != NUM_CLASSES:
        raise ValueError(f"need the {NUM_CLASSES} class VAEs, got {len(vaes)}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    labels = np.asarray(labels, np.int64)
    decoders = [v.decoder for v in vaes]
    samples = latent_samples(config.margin_search_samples, seed=1234)

    pool_file = out_dir / "margin_pool.npy"
    if pool_file.is_file():  # a resumed run keeps the pool it started with
        pool = np.load(pool_file)
    else:
        pool, _ = confusable_pool(ABS(decoders, samples, n_steps=1, max_batch=512), images, labels,
                                  config.margin_pool_ratio)
        np.save(pool_file, pool)
    if len(pool) == 0:
        raise ValueError(f"no training image has a loss ratio below margin_pool_ratio={config.margin_pool_ratio}; "
                         f"nothing to train")

    holder = _Decoders(decoders)
    variables = [w for d in decoders for w in d.trainable_variables]
    optimizer = keras.optimizers.Adam(learning_rate=config.learning_rate)
    optimizer.build(variables)
    pool_x, pool_y = tf.constant(images[pool]), tf.constant(labels[pool])
    searcher = {}

    @tf.function
    def update(x, y, z):
        with tf.GradientTape() as tape:
            loss, violations = margin_loss(class_losses(decoders, x, z), y, config.margin_alpha)
            loss = tf.reduce_mean(loss)
        optimizer.apply_gradients(zip(tape.gradient(loss, variables), variables))
        return {"margin_loss": loss, "violations": tf.reduce_mean(violations)}

    def train_step(batch, step):
        if int(step.numpy()) % config.margin_refresh == 0 or "model" not in searcher:
            searcher["model"] = ABS(decoders, samples, n_steps=config.margin_search_steps, max_batch=512)
        x, y = tf.gather(pool_x, batch), tf.gather(pool_y, batch)
        z = searcher["model"].search(x)["latents"]
        return update(x, y, z)

    result = loop.fit(
        model=holder, optimizer=optimizer, train_step=train_step,
        make_batches=lambda e: loop.epoch_batches(len(pool), config.batch_size, config.seed, e),
        epochs=config.epochs, checkpoint_dir=out_dir / "ckpt" / "margin", config=config.training_record(),
        summary_dir=out_dir / "tb" / "margin", verbose=verbose)
    metrics = dict(pool_size=int(len(pool)), margin_pool_ratio=config.margin_pool_ratio, epochs=config.epochs)
    return run_dir.record_unit(out_dir / RECORD_FILE, result, metrics)
