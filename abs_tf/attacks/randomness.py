"""Per-image random streams for attacks: results that do not depend on the batch.

An attack's random numbers for an image (PGD's random start, SPSA's probes, ...) are a pure
function of (the call's ``seed``, the image's content, a stream number, the position in the
stream). So an image gets the same random numbers whichever images share its batch, in
whichever order, and whether the attack runs eagerly or compiled; TF's global RNG is never
used. Two identical images get identical streams (they are the same problem).

The generator is a counter-based hash (Wellons' "lowbias32", 32-bit), computed elementwise
on uint32 tensors: cheap, vectorised over the batch, and of ample quality for random starts
and probe directions (these need independence of a few thousand numbers, not cryptography).

    keys = image_keys(images, seed)            # uint32 [B]
    u = uniform(keys, [28, 28, 1], stream=3)   # float32 [B, 28, 28, 1] in (0, 1)
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

_GOLDEN = 0x9E3779B9  # 2^32 / golden ratio: separates streams and seeds


def _u32(value) -> tf.Tensor:
    return tf.cast(value, tf.uint32)


def _mix(x: tf.Tensor) -> tf.Tensor:
    """lowbias32 (https://nullprogram.com/blog/2018/07/31/): uint32 -> uint32, bijective."""
    x = tf.bitwise.bitwise_xor(x, tf.bitwise.right_shift(x, _u32(16)))
    x = x * _u32(0x7FEB352D)
    x = tf.bitwise.bitwise_xor(x, tf.bitwise.right_shift(x, _u32(15)))
    x = x * _u32(0x846CA68B)
    return tf.bitwise.bitwise_xor(x, tf.bitwise.right_shift(x, _u32(16)))


def image_keys(images, seed) -> tf.Tensor:
    """uint32 [B]: one key per image from its content (farmhash fingerprint of its pixels)
    and ``seed`` (int scalar; tensor or Python int)."""
    images = tf.convert_to_tensor(images, tf.float32)
    fingerprint = tf.cast(tf.fingerprint(tf.reshape(images, [tf.shape(images)[0], -1])), tf.uint32)  # [B, 8]
    shifts = _u32([0, 8, 16, 24])
    low = tf.reduce_sum(tf.bitwise.left_shift(fingerprint[:, :4], shifts), axis=1)   # distinct bits: sum = or
    high = tf.reduce_sum(tf.bitwise.left_shift(fingerprint[:, 4:], shifts), axis=1)
    seed = _mix(tf.cast(tf.cast(seed, tf.int64) % (2 ** 32), tf.uint32) + _u32(_GOLDEN))
    return _mix(tf.bitwise.bitwise_xor(low, _mix(tf.bitwise.bitwise_xor(high, seed))))


def _bits(keys, shape, stream) -> tf.Tensor:
    """uint32 [B, *shape]: element n of stream ``stream`` for each key."""
    size = int(np.prod(shape))
    counter = tf.range(size, dtype=tf.int64)
    counter = tf.cast(counter % (2 ** 32), tf.uint32)
    stream_key = _mix(tf.cast(tf.cast(stream, tf.int64) % (2 ** 32), tf.uint32) * _u32(_GOLDEN) + _u32(1))
    per_key = _mix(tf.bitwise.bitwise_xor(tf.convert_to_tensor(keys, tf.uint32), stream_key))  # [B]
    bits = _mix(tf.bitwise.bitwise_xor(_mix(per_key[:, None] + counter[None, :] * _u32(_GOLDEN)), per_key[:, None]))
    return tf.reshape(bits, tf.concat([tf.shape(keys)[:1], tf.constant(shape, tf.int32)], 0))


def uniform(keys, shape, stream=0) -> tf.Tensor:
    """float32 [B, *shape], uniform on (0, 1) (24-bit resolution, never exactly 0 or 1)."""
    bits = tf.bitwise.right_shift(_bits(keys, shape, stream), _u32(8))
    return (tf.cast(bits, tf.float32) + 0.5) * (1.0 / 2 ** 24)


def normal(keys, shape, stream=0) -> tf.Tensor:
    """float32 [B, *shape], standard normal (Box-Muller on two uniform streams)."""
    stream = tf.cast(stream, tf.int64)
    u1 = uniform(keys, shape, 2 * stream + 1000003)
    u2 = uniform(keys, shape, 2 * stream + 1000004)
    return tf.sqrt(-2.0 * tf.math.log(u1)) * tf.cos(2.0 * np.pi * u2)


def rademacher(keys, shape, stream=0) -> tf.Tensor:
    """float32 [B, *shape] of +1 / -1 with equal probability."""
    bit = tf.bitwise.bitwise_and(tf.bitwise.right_shift(_bits(keys, shape, stream), _u32(31)), _u32(1))
    return 2.0 * tf.cast(bit, tf.float32) - 1.0


def uniform_ball(keys, norm: str, stream=0) -> tf.Tensor:
    """float32 [B, 28, 28, 1] uniform in the unit ball of ``norm`` ("linf" or "l2")."""
    shape = [28, 28, 1]
    if norm == "linf":
        return 2.0 * uniform(keys, shape, stream) - 1.0
    if norm != "l2":
        raise ValueError(f"uniform_ball supports 'linf' and 'l2', got {norm!r}")
    direction = normal(keys, shape, stream)
    direction /= tf.maximum(tf.norm(tf.reshape(direction, [-1, 784]), axis=1), 1e-12)[:, None, None, None]
    radius = uniform(keys, [1], tf.cast(stream, tf.int64) + 7919)[:, 0] ** (1.0 / 784)
    return direction * radius[:, None, None, None]
