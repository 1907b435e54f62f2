"""Input checks shared by every model: images float32 [B, 28, 28, 1] with pixels in [0, 1].

The dtype is checked when the call is traced (a Python `TypeError`). The shape is checked twice:
when the call is traced, if the static shape already shows the problem (a Python `ValueError`),
and always at run time inside the graph, so that a `tf.function` or an exported SavedModel
traced with unknown dimensions (e.g. ``TensorSpec([None, None, None, None])``) refuses
``[2, 28, 28, 4]`` instead of reading it as a grouped convolution. NaN/Inf and the value range
are run-time TF assertions as well. Every run-time failure is a `tf.errors.InvalidArgumentError`
whose message names the problem, e.g.
``images must have shape [B, 28, 28, 1], got [2, 28, 28, 4]``.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from abs_tf.constants import IMAGE_SHAPE, NUM_CLASSES

_EXPECTED = "[B, " + ", ".join(str(d) for d in IMAGE_SHAPE) + "]"


def shape_message(name: str, got: str) -> str:
    """The one wording of a wrong image shape: ``<name> must have shape [B, 28, 28, 1], got <got>``."""
    return f"{name} must have shape {_EXPECTED}, got {got}"


def _static_shape_problem(shape: tf.TensorShape):
    """A description of a shape that cannot be [B, 28, 28, 1] whatever its unknown dims, or None."""
    if shape.rank is None:
        return None
    dims = "[" + ", ".join("None" if d is None else str(d) for d in shape.as_list()) + "]"
    if shape.rank != len(IMAGE_SHAPE) + 1:
        return f"{dims} (rank {shape.rank})"
    if any(got is not None and got != want for got, want in zip(shape[1:], IMAGE_SHAPE)):
        channels_first = tuple(shape[1:]) == (IMAGE_SHAPE[2], *IMAGE_SHAPE[:2])
        return dims + (" (channels first? abs-tf images are NHWC)" if channels_first else "")
    return None


def _shape_assertion(images: tf.Tensor, name: str):
    """A run-time assertion that ``images`` is [B, 28, 28, 1]; its message shows the actual shape."""
    shape = tf.shape(images, out_type=tf.int32)
    padded = tf.concat([shape, tf.zeros([len(IMAGE_SHAPE) + 1], tf.int32)], 0)   # safe to slice at any rank
    ok = tf.logical_and(tf.equal(tf.size(shape), len(IMAGE_SHAPE) + 1),
                        tf.reduce_all(tf.equal(padded[1:len(IMAGE_SHAPE) + 1], IMAGE_SHAPE)))
    got = tf.strings.join(["[", tf.strings.reduce_join(tf.strings.as_string(shape), separator=", "), "]"])
    return tf.debugging.Assert(ok, [tf.strings.join([shape_message(name, ""), got])])


def check_images(images, name: str = "images") -> tf.Tensor:
    """Validates a batch of images and returns it as a float32 tensor of static shape [B, 28, 28, 1].

    Args:
      images: array-like [B, 28, 28, 1], floating dtype, values in [0, 1], no NaN/Inf.
        float16/float64 are cast to float32. B may be 0.

    Raises:
      TypeError: non-floating dtype (e.g. uint8 pixels: divide by 255 first).
      ValueError: a shape that is wrong already when the call is traced.
      tf.errors.InvalidArgumentError: at run time, a shape other than [B, 28, 28, 1], NaN/Inf
        or values outside [0, 1].
    """
    if not isinstance(images, (tf.Tensor, tf.Variable)):
        images = np.asarray(images)
    dtype = tf.as_dtype(images.dtype)
    if not dtype.is_floating:
        raise TypeError(
            f"{name} must be a floating dtype with pixels in [0, 1], got {dtype.name}"
            + (" (divide uint8 pixels by 255)" if dtype == tf.uint8 else ""))
    images = tf.cast(images, tf.float32)
    problem = _static_shape_problem(images.shape)
    if problem is not None:
        raise ValueError(shape_message(name, problem))
    # The shape assertion runs first: the value checks below would otherwise report nothing
    # useful (or pass) for a wrongly shaped batch.
    with tf.control_dependencies([_shape_assertion(images, name)]):
        images = tf.identity(images)
    with tf.control_dependencies([
        tf.debugging.assert_all_finite(images, f"{name} contain NaN or Inf"),
        tf.debugging.assert_greater_equal(images, 0.0, message=f"{name} have pixels < 0; expected [0, 1]"),
        tf.debugging.assert_less_equal(images, 1.0, message=f"{name} have pixels > 1; expected [0, 1]"),
    ]):
        checked = tf.identity(images)
    if not tf.executing_eagerly():
        checked.set_shape([None, *IMAGE_SHAPE])   # the assertion above guarantees it at run time
    return checked


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
        tf.debugging.assert_less(labels, tf.constant(NUM_CLASSES, tf.int64), message=f"{name} > {NUM_CLASSES - 1}"),
    ]):
        return tf.identity(labels)
