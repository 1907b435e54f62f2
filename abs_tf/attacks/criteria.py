"""What counts as adversarial: criterion objects shared by every attack and the verifier.

A criterion is stateless; the per-image classes it refers to travel as the attack's
``labels`` argument, so a batch can be split into any subsets (searches do) without
splitting the criterion:

* `Misclassification()`: ``labels`` are the true classes; adversarial iff the predicted
  class differs.
* `TargetedMisclassification()`: ``labels`` are the *target* classes; adversarial iff the
  predicted class is the target.

Each criterion gives

* ``criterion(logits [B, C], labels [B]) -> bool [B]`` and ``decide(classes, labels)`` (the
  same from predicted classes only, for decision-based attacks);
* ``margin(logits, labels) -> float [B]``: > 0 while not adversarial, < 0 once adversarial
  (the logit gap the attack has to close; ties at 0 are decided by argmax);
* ``crossentropy(logits, labels) -> float [B]``: a smooth loss that grows towards success.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf


def _true_and_best_other(logits, labels):
    """(logit of class ``labels`` [B], largest logit of the other classes [B])."""
    logits = tf.convert_to_tensor(logits)
    onehot = tf.one_hot(tf.cast(labels, tf.int64), tf.shape(logits)[-1]) > 0.5
    true = tf.reduce_sum(tf.where(onehot, logits, tf.zeros_like(logits)), axis=-1)
    other = tf.reduce_max(tf.where(onehot, tf.fill(tf.shape(logits), logits.dtype.min), logits), axis=-1)
    return true, other


def _log_sum_exp_others(logits, labels):
    """log Σ_{c≠label} exp(z_c - z_label) [B], computed without cancellation."""
    logits = tf.convert_to_tensor(logits)
    onehot = tf.one_hot(tf.cast(labels, tf.int64), tf.shape(logits)[-1]) > 0.5
    true = tf.reduce_sum(tf.where(onehot, logits, tf.zeros_like(logits)), axis=-1, keepdims=True)
    others = tf.where(onehot, tf.fill(tf.shape(logits), -np.inf), logits - true)
    return tf.reduce_logsumexp(others, axis=-1)


def class_crossentropy(logits, labels):
    """Softmax cross-entropy of class ``labels`` [B], as ``log(1 + Σ_{c≠y} exp(z_c - z_y))``:
    the same function as `tf.nn.sparse_softmax_cross_entropy_with_logits`, but its gradient
    stays accurate for confident models (TF's ``softmax - onehot`` computes ``1 - p_y`` by
    cancellation and loses the true-class term once p_y rounds to 1 in float32, i.e. at
    margins above ~15)."""
    return tf.math.softplus(_log_sum_exp_others(logits, labels))


class Criterion:
    """Base class; subclasses define `decide`, `margin` and `crossentropy`."""

    targeted = False

    def __call__(self, logits, labels):
        return self.decide(tf.argmax(logits, axis=-1), labels)

    def decide(self, classes, labels):
        raise NotImplementedError

    def margin(self, logits, labels):
        raise NotImplementedError

    def crossentropy(self, logits, labels):
        raise NotImplementedError

    def __repr__(self):
        return f"{type(self).__name__}()"

    def __eq__(self, other):
        return type(self) is type(other)

    def __hash__(self):
        return hash(type(self))


class Misclassification(Criterion):
    """Untargeted: adversarial iff argmax(logits) != label (the true class)."""

    def decide(self, classes, labels):
        return tf.not_equal(tf.cast(classes, tf.int64), tf.cast(labels, tf.int64))

    def margin(self, logits, labels):
        """Logit of the true class minus the largest other logit."""
        true, other = _true_and_best_other(logits, labels)
        return true - other

    def crossentropy(self, logits, labels):
        """Cross-entropy of the true class (grows as the true class loses)."""
        return class_crossentropy(logits, labels)


class TargetedMisclassification(Criterion):
    """Targeted: adversarial iff argmax(logits) == label (here: the target class)."""

    targeted = True

    def decide(self, classes, labels):
        return tf.equal(tf.cast(classes, tf.int64), tf.cast(labels, tf.int64))

    def margin(self, logits, labels):
        """Largest non-target logit minus the target's logit."""
        true, other = _true_and_best_other(logits, labels)
        return other - true

    def crossentropy(self, logits, labels):
        """Minus the cross-entropy of the target class (grows as the target wins)."""
        return -class_crossentropy(logits, labels)


MISCLASSIFICATION = Misclassification()


def check_criterion(criterion) -> Criterion:
    if not isinstance(criterion, Criterion):
        raise TypeError(f"criterion must be a Criterion (e.g. Misclassification()), got {criterion!r}")
    return criterion
