"""What the `explain` signature of an exported ABS model returns, computed inside the graph.

For images x [B,28,28,1] in [0,1], one latent search gives per image:
  losses [B,10]           the class losses (per-pixel units, unscaled; logits = -losses * scalings)
  reconstructions [B,28,28,10]  each class decoder's image at its found latent, in [0,1]
  latents [B,10,8]        the found latents z*_c
  certified_l2 [B]        (ABS, not Binary ABS) the certified-L2 estimate of the predicted class:
                          the L2 size (pixels in [0,1]) below which no perturbation can change the
                          decision, estimated as in `abs_tf.models.abs.certify` with the model's own
                          decision as the label (0 where two classes tie).
"""

from __future__ import annotations

import tensorflow as tf

from abs_tf.constants import NUM_CLASSES


def certified_l2(images, reconstructions, latents, classes, beta: float) -> tf.Tensor:
    """The graph form of `abs_tf.models.abs.certify.l2_lower_bounds` (same formula, float64 inside).

    Args:
      images: float32 [B,28,28,1], the model's input after its preprocessing.
      reconstructions: float32 [B,28,28,10]; latents: float32 [B,10,8]; classes: int [B].
      beta: the prior weight of the ABS loss.
    Returns float32 [B] (0 where another class explains the image at least as well).
    """
    x = tf.cast(images, tf.float64)
    r = tf.sqrt(tf.reduce_sum(tf.square(x - tf.cast(reconstructions, tf.float64)), [1, 2]))    # [B,10]
    k = 0.5 * beta * tf.reduce_sum(tf.square(tf.cast(latents, tf.float64)), -1)               # [B,10]
    r_y = tf.gather(r, classes, batch_dims=1)[:, None]
    k_y = tf.gather(k, classes, batch_dims=1)[:, None]
    loss_gap = tf.square(r) + k - tf.square(r_y) - k_y              # 784 * (l_c - l_y)
    eps = loss_gap / (2.0 * (r + r_y))                              # IEEE: x/0 -> inf or nan, masked below
    eps = tf.where(eps > r, tf.sqrt(tf.maximum(k - k_y, 0.0)) - r_y, eps)
    eps = tf.where(loss_gap <= 0, tf.zeros_like(eps), eps)
    eps = tf.where(tf.one_hot(classes, NUM_CLASSES) > 0, tf.fill(tf.shape(eps), tf.constant(float("inf"), tf.float64)),
                   eps)
    return tf.cast(tf.maximum(tf.reduce_min(eps, 1), 0.0), tf.float32)
