"""Losses the gradient attacks maximise, their input gradients, and the no-gradient check.

Every loss is ``(logits [B, C], labels [B], criterion) -> float [B]``, larger = closer to
the criterion's success:

* ``"margin"`` (the default of every gradient attack): minus the criterion's logit margin
  (CW's f6): largest other logit minus the true logit (untargeted). Insensitive to the logit
  scale, which decides attacks on ABS: its logits are -losses with differences of ~0.01, its
  softmax is almost flat (p_y ~ 0.1), and the cross-entropy gradient then points at the mean
  of all wrong classes instead of the runner-up. Measured (scripts/compare_abs_gradients.py
  --mode=loss, test images 0-15, envelope gradient, minimal-adversarial search): on ABS the
  median FGM L2 is 3.30 with cross-entropy, 2.15 with the cross-entropy of the calibrated 440x
  logits, 1.92 with the margin; FGSM L∞ 0.255 (one image never broken), 0.185, 0.183. On the
  CNN the margin is not worse either (FGM 1.14 vs 1.20, FGSM 0.076 vs 0.083).
* ``"crossentropy"``: the criterion's cross-entropy (CleverHans' default loss).

`loss_and_gradient` also says, per image, whether the gradient is *usable*: an all-zero or
non-finite input gradient means the attack cannot move (a binarizing front end, a stop-gradient,
a saturated or masked model). Attacks record this and the result marks such an image
"attack failed (no gradient)", never robust.
"""

from __future__ import annotations

import tensorflow as tf

from abs_tf.attacks.criteria import MISCLASSIFICATION

LOSSES = ("margin", "crossentropy")
DEFAULT_LOSS = "margin"


def check_loss(name: str) -> str:
    if name not in LOSSES:
        raise ValueError(f"loss must be one of {LOSSES}, got {name!r}")
    return name


def attack_loss(name: str):
    """The loss ``(logits, labels, criterion) -> [B]`` that attacks maximise (module doc)."""
    check_loss(name)
    if name == "margin":
        return lambda logits, labels, criterion=MISCLASSIFICATION: -criterion.margin(logits, labels)
    return lambda logits, labels, criterion=MISCLASSIFICATION: criterion.crossentropy(logits, labels)


def usable_gradient(grad) -> tf.Tensor:
    """bool [B]: the gradient rows [B, ...] that are finite and not all zero."""
    flat = tf.reshape(grad, [tf.shape(grad)[0], -1])
    finite = tf.reduce_all(tf.math.is_finite(flat), axis=1)
    nonzero = tf.reduce_any(tf.not_equal(flat, 0.0), axis=1)
    return tf.logical_and(finite, nonzero)


def clean_gradient(grad):
    """(grad with non-finite rows set to 0, usable bool [B])."""
    usable = usable_gradient(grad)
    finite = tf.reduce_all(tf.math.is_finite(tf.reshape(grad, [tf.shape(grad)[0], -1])), axis=1)
    grad = tf.where(finite[:, None, None, None], grad, tf.zeros_like(grad))
    return grad, usable


def loss_and_gradient(model, images, labels, loss: str = DEFAULT_LOSS, criterion=MISCLASSIFICATION):
    """The attack loss and its input gradient.

    Args: model images -> logits; images float32 [B, 28, 28, 1]; labels int64 [B] (the
      criterion's classes); loss: a name of `LOSSES`.
    Returns: (logits [B, C], gradient float32 [B, 28, 28, 1] (zeros where the model gives
      none or a non-finite one), usable bool [B] (see module doc)).
    """
    loss_fn = attack_loss(loss)
    with tf.GradientTape() as tape:
        tape.watch(images)
        logits = model(images)
        value = loss_fn(logits, labels, criterion)
    grad = tape.gradient(value, images, unconnected_gradients=tf.UnconnectedGradients.ZERO)
    grad, usable = clean_gradient(grad)
    return logits, grad, usable
