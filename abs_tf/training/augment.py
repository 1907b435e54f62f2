"""Training-time augmentation of MNIST images (class VAEs and classifiers alike)."""

from __future__ import annotations

import math

import tensorflow as tf


def random_affine(images, seed, probability: float = 0.3, max_zoom: float = 0.1,
                  max_rotation_deg: float = 8.0, max_shift: float = 1.5):
    """Light, stateless augmentation: random zoom/rotation/shift for a fraction of images.

    Args:
      images: [B,28,28,1] in [0,1].
      seed: int32 [2] stateless seed; the same seed gives the same transforms.
      probability: fraction of images transformed; the rest pass unchanged.
      max_zoom: zoom factors in [1 - max_zoom, 1 + max_zoom]. max_rotation_deg: degrees.
      max_shift: largest translation per axis, pixels.
    Returns: [B,28,28,1] in [0,1] (bilinear resampling, zeros outside).
    """
    b = tf.shape(images)[0]
    # Five split seeds: zoom, angle, x and y shift, whether to apply (the shipped runs' transforms).
    seeds = tf.unstack(tf.random.experimental.stateless_split(seed, 5))
    u = lambda i, lo, hi: tf.random.stateless_uniform([b], seeds[i], lo, hi)
    zoom = u(0, 1.0 - max_zoom, 1.0 + max_zoom)
    angle = u(1, -max_rotation_deg, max_rotation_deg) * (math.pi / 180.0)
    tx, ty = u(2, -max_shift, max_shift), u(3, -max_shift, max_shift)
    apply = tf.cast(u(4, 0.0, 1.0) < probability, tf.float32)
    zoom = apply * zoom + (1 - apply) * 1.0
    angle, tx, ty = apply * angle, apply * tx, apply * ty
    # Output pixel p maps to input pixel R (p - c) / zoom + c - t, with c the image centre and
    # R the rotation.
    c = 13.5
    cos, sin = tf.cos(angle) / zoom, tf.sin(angle) / zoom
    a2 = c - cos * c + sin * c - tx
    b2 = c - sin * c - cos * c - ty
    zeros = tf.zeros_like(cos)
    transforms = tf.stack([cos, -sin, a2, sin, cos, b2, zeros, zeros], axis=1)
    out = tf.raw_ops.ImageProjectiveTransformV3(
        images=images, transforms=transforms, output_shape=tf.constant([28, 28]),
        interpolation="BILINEAR", fill_mode="CONSTANT", fill_value=0.0)
    return tf.clip_by_value(out, 0.0, 1.0)
