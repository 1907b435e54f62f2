"""Training the ten class VAEs of ABS (each on its own class's training images only)."""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from abs_tf.training import loop as training
from abs_tf.models.abs.vae import ClassVAE, abs_loss, build_vae

WEIGHTS_PATTERN = "vae_{}.weights.h5"


def random_affine(images, seed, probability: float = 0.3, max_zoom: float = 0.1,
                  max_rotation_deg: float = 8.0, max_shift: float = 1.5, max_shear_deg: float = 0.0):
    """Light, stateless augmentation: random zoom/rotation/shift/shear for a fraction of images.

    Args:
      images: [B,28,28,1] in [0,1].
      seed: int32 [2] stateless seed; the same seed gives the same transforms.
      probability: fraction of images transformed; the rest pass unchanged.
      max_shift: largest translation, pixels. max_shear_deg: largest horizontal shear angle,
        degrees (0: none; the default, which keeps the transforms of earlier runs).
    Returns: [B,28,28,1] in [0,1] (bilinear resampling, zeros outside).
    """
    b = tf.shape(images)[0]
    # Five split seeds as before shear existed (so earlier runs' transforms are unchanged).
    seeds = tf.unstack(tf.random.experimental.stateless_split(seed, 5))
    seeds.append(tf.random.experimental.stateless_fold_in(seed, 5))
    u = lambda i, lo, hi: tf.random.stateless_uniform([b], seeds[i], lo, hi)
    zoom = u(0, 1.0 - max_zoom, 1.0 + max_zoom)
    angle = u(1, -max_rotation_deg, max_rotation_deg) * (math.pi / 180.0)
    tx, ty = u(2, -max_shift, max_shift), u(3, -max_shift, max_shift)
    apply = tf.cast(u(4, 0.0, 1.0) < probability, tf.float32)
    shear = tf.tan(u(5, -max_shear_deg, max_shear_deg) * (math.pi / 180.0)) if max_shear_deg > 0 else 0.0
    zoom = apply * zoom + (1 - apply) * 1.0
    angle, tx, ty, shear = apply * angle, apply * tx, apply * ty, apply * shear
    # Output pixel p maps to input pixel R S (p - c) / zoom + c - t, with c the image centre,
    # R the rotation and S = [[1, shear], [0, 1]] the shear.
    c = 13.5
    cos, sin = tf.cos(angle) / zoom, tf.sin(angle) / zoom
    a0, a1 = cos, cos * shear - sin
    b0, b1 = sin, sin * shear + cos
    a2 = c - a0 * c - a1 * c - tx
    b2 = c - b0 * c - b1 * c - ty
    zeros = tf.zeros_like(a0)
    transforms = tf.stack([a0, a1, a2, b0, b1, b2, zeros, zeros], axis=1)
    out = tf.raw_ops.ImageProjectiveTransformV3(
        images=images, transforms=transforms, output_shape=tf.constant([28, 28]),
        interpolation="BILINEAR", fill_mode="CONSTANT", fill_value=0.0)
    return tf.clip_by_value(out, 0.0, 1.0)


def random_elastic(images, seed, probability: float = 0.1, magnitude: float = 1.5, grid: int = 4):
    """Stateless elastic distortion for a fraction of images (a smooth random displacement field).

    The field is uniform in [-magnitude, magnitude] pixels (per axis) on a ``grid`` x ``grid``
    lattice, bilinearly upsampled to the image size, so neighbouring pixels move together (strokes bend,
    they do not tear).

    Args:
      images: [B,28,28,1] in [0,1].
      seed: int32 [2] stateless seed; the same seed gives the same distortions.
      probability: fraction of images distorted; the rest pass unchanged.
    Returns: [B,28,28,1] in [0,1] (bilinear resampling, zeros outside).
    """
    b = tf.shape(images)[0]
    seeds = tf.random.experimental.stateless_split(seed, 2)
    coarse = tf.random.stateless_uniform([b, grid, grid, 2], seeds[0], -magnitude, magnitude)
    field = tf.image.resize(coarse, tf.shape(images)[1:3], method="bilinear")
    apply = tf.cast(tf.random.stateless_uniform([b], seeds[1]) < probability, tf.float32)
    return warp(images, field * apply[:, None, None, None])


def warp(images, displacement):
    """Bilinear resampling: out[b, y, x] = images[b, y + dy, x + dx], zeros outside the image.

    Args:
      images: [B,28,28,1]. displacement: [B,28,28,2] (dy, dx) in pixels.
    Returns: [B,28,28,1].
    """
    shape = tf.shape(images)
    b, h, w = shape[0], shape[1], shape[2]
    # One pixel of zero border; coordinates clipped onto it read zeros.
    padded = tf.reshape(tf.pad(images[..., 0], [[0, 0], [1, 1], [1, 1]]), [-1])
    hp, wp = h + 2, w + 2
    grid_y, grid_x = tf.meshgrid(tf.range(h, dtype=tf.float32), tf.range(w, dtype=tf.float32), indexing="ij")
    ys = tf.clip_by_value(grid_y + displacement[..., 0] + 1.0, 0.0, tf.cast(hp - 1, tf.float32))
    xs = tf.clip_by_value(grid_x + displacement[..., 1] + 1.0, 0.0, tf.cast(wp - 1, tf.float32))
    y0 = tf.minimum(tf.floor(ys), tf.cast(hp - 2, tf.float32))
    x0 = tf.minimum(tf.floor(xs), tf.cast(wp - 2, tf.float32))
    fy, fx = ys - y0, xs - x0
    base = (tf.range(b) * hp * wp)[:, None, None]
    y0, x0 = tf.cast(y0, tf.int32), tf.cast(x0, tf.int32)
    at = lambda dy, dx: tf.gather(padded, base + (y0 + dy) * wp + x0 + dx)
    out = ((1 - fy) * ((1 - fx) * at(0, 0) + fx * at(0, 1))
           + fy * ((1 - fx) * at(1, 0) + fx * at(1, 1)))
    return out[..., None]


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


def train_class_vae(train_images, test_images, *, class_id: int, out_dir, epochs: int = 20,
                    batch_size: int = 64, learning_rate: float = 2e-3, beta: float = 1.0,
                    kl_mean_weight: float | None = None,
                    seed: int = 0, augment: bool = True, objective: str = "elbo", likelihood: str = "gaussian",
                    init_weights=None,
                    augment_probability: float = 0.3, augment_max_shift: float = 1.5,
                    augment_shear_deg: float = 0.0, elastic_probability: float = 0.0,
                    elastic_magnitude: float = 1.5, verbose: int = 1):
    """Trains (or resumes) one class VAE.

    Args:
      train_images: [N,28,28,1] in [0,1], the class's training images.
      test_images: [M,28,28,1], the class's test images, for per-epoch evaluation.
      objective: "elbo" (the VAE loss) or "map" (the ABS test-time loss at the posterior
        mean; see `ClassVAE.loss_terms`), e.g. to fine-tune a trained VAE for ABS.
      kl_mean_weight: weight of the KL's ½||mu||² part (None: ``beta``); see `ClassVAE`.
      likelihood: "gaussian" (squared error, the original's) or "bernoulli" (cross-entropy)
        training likelihood; see `ClassVAE.loss_terms`. Evaluation always uses the ABS loss.
      init_weights: optional ``vae_{c}.weights.h5`` file to start from (fine-tuning); a
        checkpoint in ``out_dir`` (resume) takes precedence over it.
      augment_probability: fraction of training images given a random affine transform.
      augment_max_shift: largest translation of that transform, pixels (0: zoom and rotation only).
      augment_shear_deg: largest shear angle of that transform, degrees (0: no shear).
      elastic_probability, elastic_magnitude: fraction of training images given an elastic
        distortion (`random_elastic`, independent of the affine one; only with ``augment``) and
        its largest displacement, pixels.
      out_dir: run directory; uses ``ckpt/class_{c}``, ``tb/class_{c}`` and writes the final
        ``vae_{c}.weights.h5`` plus ``vae_{c}.json`` (metrics, wall time) when done.
    Returns: (vae, metrics dict).
    """
    out_dir = Path(out_dir)
    class_seed = seed * 100 + class_id
    keras.utils.set_random_seed(class_seed)
    vae = build_vae(beta=beta, kl_mean_weight=kl_mean_weight)
    if init_weights is not None:
        _load_weights(vae, Path(init_weights))
    steps_per_epoch = math.ceil(len(train_images) / batch_size)
    # Cosine decay over the whole run; the schedule reads the optimizer's checkpointed step
    # counter, so a resumed run continues on the same curve.
    schedule = keras.optimizers.schedules.CosineDecay(learning_rate, epochs * steps_per_epoch, alpha=0.05)
    optimizer = keras.optimizers.Adam(learning_rate=schedule)
    optimizer.build(vae.trainable_variables)
    train_x = tf.constant(train_images)
    preview = tf.constant(test_images[:16])

    @tf.function
    def train_step(idx, step):
        x = tf.gather(train_x, idx)
        s = training.step_seed(class_seed, step)
        if augment:
            x = random_affine(x, tf.random.experimental.stateless_fold_in(s, 1), probability=augment_probability,
                              max_shift=augment_max_shift, max_shear_deg=augment_shear_deg)
            if elastic_probability > 0:
                x = random_elastic(x, tf.random.experimental.stateless_fold_in(s, 3),
                                   probability=elastic_probability, magnitude=elastic_magnitude)
        with tf.GradientTape() as tape:
            terms = vae.loss_terms(x, seed=tf.random.experimental.stateless_fold_in(s, 2), training=True,
                                   objective=objective, likelihood=likelihood)
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
                             training.image_grid(np.concatenate([preview.numpy(), rec.numpy()])), max_outputs=1)
        return {f"test/{k}": v for k, v in metrics.items()}

    start = time.time()
    result = training.fit(
        model=vae, optimizer=optimizer, train_step=train_step,
        make_batches=lambda e: training.epoch_batches(len(train_images), batch_size, class_seed, e),
        epochs=epochs, checkpoint_dir=out_dir / "ckpt" / f"class_{class_id}",
        summary_dir=out_dir / "tb" / f"class_{class_id}", epoch_end=epoch_end, verbose=verbose)
    metrics = evaluate_vae(vae, test_images)
    metrics.update(class_id=class_id, epochs=epochs, wall_time_s=time.time() - start,
                   resumed_from_epoch=result.resumed_from_epoch)
    vae.save_weights(out_dir / WEIGHTS_PATTERN.format(class_id))
    (out_dir / f"vae_{class_id}.json").write_text(json.dumps(metrics, indent=2))
    return vae, metrics


def load_vaes(weights_dir, classes=range(10), beta: float = 1.0):
    """Loads the class VAEs ``vae_{c}.weights.h5`` from a directory.

    Raises FileNotFoundError naming the missing file, ValueError for a corrupt/mismatched one.
    """
    weights_dir = Path(weights_dir)
    vaes = []
    for c in classes:
        path = weights_dir / WEIGHTS_PATTERN.format(c)
        if not path.is_file():
            raise FileNotFoundError(f"VAE weights for class {c} not found: {path}")
        vae = build_vae(beta=beta)
        _load_weights(vae, path)
        vaes.append(vae)
    return vaes


def _load_weights(vae: ClassVAE, path: Path):
    if not path.is_file():
        raise FileNotFoundError(f"VAE weights not found: {path}")
    try:
        vae.load_weights(path)
    except Exception as e:  # h5py/keras raise assorted types for corrupt files
        raise ValueError(f"cannot load VAE weights {path}: {type(e).__name__}: {e}") from e
