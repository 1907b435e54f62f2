"""Input checks shared by every model: images float32 [B, 28, 28, 1] with pixels in [0, 1].

The shape and dtype are checked when the call is traced (a Python error naming the problem);
NaN/Inf and the value range are checked by TF assertions, so they also hold inside a
`tf.function` and an exported SavedModel (there they raise `tf.errors.InvalidArgumentError`
whose message names the problem).
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

IMAGE_SHAPE = (28, 28, 1)
NUM_CLASSES = 10


def check_images(images, name: str = "images") -> tf.Tensor:
    """Validates a batch of images and returns it as a float32 tensor.

    Args:
      images: array-like [B, 28, 28, 1], floating dtype, values in [0, 1], no NaN/Inf.
        float16/float64 are cast to float32. B may be 0.

    Raises:
      TypeError: non-floating dtype (e.g. uint8 pixels: divide by 255 first).
      ValueError: wrong rank or shape.
      tf.errors.InvalidArgumentError: NaN/Inf or values outside [0, 1].
    """
    if not isinstance(images, (tf.Tensor, tf.Variable)):
        images = np.asarray(images)
    dtype = tf.as_dtype(images.dtype)
    if not dtype.is_floating:
        raise TypeError(
            f"{name} must be a floating dtype with pixels in [0, 1], got {dtype.name}"
            + (" (divide uint8 pixels by 255)" if dtype == tf.uint8 else ""))
    images = tf.cast(images, tf.float32)
    shape = images.shape
    if shape.rank is None or shape.rank != 4:
        raise ValueError(f"{name} must have shape [B, 28, 28, 1] (NHWC), got rank {shape.rank}: {shape}")
    for got, want in zip(shape[1:], IMAGE_SHAPE):
        if got is not None and got != want:
            raise ValueError(f"{name} must have shape [B, 28, 28, 1] (NHWC), got {shape}")
    with tf.control_dependencies([
        tf.debugging.assert_all_finite(images, f"{name} contain NaN or Inf"),
        tf.debugging.assert_greater_equal(images, 0.0, message=f"{name} have pixels < 0; expected [0, 1]"),
        tf.debugging.assert_less_equal(images, 1.0, message=f"{name} have pixels > 1; expected [0, 1]"),
    ]):
        return tf.identity(images)


def check_labels(labels, batch_size=None, name: str = "labels") -> tf.Tensor:
    """Validates integer class labels [B] in 0..9 and returns them as int64."""
    labels = np.asarray(labels) if not isinstance(labels, (tf.Tensor, tf.Variable)) else labels
    dtype = tf.as_dtype(labels.dtype)
    if not dtype.is_integer:
        raise TypeError(f"{name} must be integers in 0..9, got dtype {dtype.name}")
    labels = tf.cast(labels, tf.int64)
    if labels.shape.rank != 1:
        raise ValueError(f"{name} must have shape [B], got {labels.shape}")
    if batch_size is not None and labels.shape[0] is not None and labels.shape[0] != batch_size:
        raise ValueError(f"{name} has {labels.shape[0]} entries for a batch of {batch_size} images")
    with tf.control_dependencies([
        tf.debugging.assert_greater_equal(labels, tf.constant(0, tf.int64), message=f"{name} < 0"),
        tf.debugging.assert_less(labels, tf.constant(NUM_CLASSES, tf.int64), message=f"{name} > 9"),
    ]):
        return tf.identity(labels)
