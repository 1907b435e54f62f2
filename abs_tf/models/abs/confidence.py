"""ABS's calibrated probabilities: a scaled softmax with an offset, low on images no class explains.

  p_c = (exp(440 l_c) + eta) / (sum_c' exp(440 l_c') + 10 eta),   eta = 3.9e-5,

for logits l (negative per-pixel class losses), computed in log space (finite for any finite logits).
"""

from __future__ import annotations

import tensorflow as tf

LOGIT_SCALE = 440.0
CONFIDENCE_OFFSET = 0.000039


def confidence_softmax(logits, scale: float = LOGIT_SCALE, offset: float = CONFIDENCE_OFFSET):
    """(exp(scale*l_c) + offset) / (sum_c exp(scale*l_c) + C*offset), in log space.

    logits [..., C] -> probabilities [..., C]; finite for any finite logits.
    """
    logits = tf.convert_to_tensor(logits, tf.float32)
    a = scale * logits
    log_offset = tf.math.log(tf.constant(offset, tf.float32))
    num = tf.math.reduce_logsumexp(tf.stack([a, tf.broadcast_to(log_offset, tf.shape(a))], -1), -1)
    num_classes = tf.cast(tf.shape(a)[-1], tf.float32)
    den = tf.math.reduce_logsumexp(
        tf.stack([tf.reduce_logsumexp(a, -1), log_offset + tf.math.log(num_classes) + 0 * a[..., 0]], -1), -1)
    return tf.exp(num - den[..., None])
