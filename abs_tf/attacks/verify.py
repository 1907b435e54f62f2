"""The one verifier every adversarial passes through, and the distances it measures.

Units: pixels in [0, 1]. ``l0`` = number of pixels whose value changed by more than
``l0_tolerance`` (default `L0_TOLERANCE` = 1e-5, far below one grey level 1/255, above float32
round-off); ``l2`` = Euclidean norm of the difference over the 784 pixels; ``linf`` = the
largest absolute pixel change.

`verify` (1) replaces candidates containing NaN/Inf by the original image, (2) clips to
[0, 1], (3) if an epsilon is given, projects the perturbation onto the epsilon-ball of the
attack's norm, (4) classifies the result again and (5) measures the distances. A candidate is
adversarial only if the model, asked again, misclassifies it (and, with an epsilon, its
distance is within epsilon). Attacks return raw candidates; only `verify` decides success.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import tensorflow as tf

from abs_tf.checks import check_images, check_labels

NORMS = ("l0", "l2", "linf")
L0_TOLERANCE = 1e-5


def check_norm(norm: str) -> str:
    if norm not in NORMS:
        raise ValueError(f"norm must be one of {NORMS}, got {norm!r}")
    return norm


def _flat(x):
    return tf.reshape(x, [tf.shape(x)[0], -1])


def distances(reference, perturbed, *, l0_tolerance: float = L0_TOLERANCE) -> dict:
    """All three distances between two image batches [B, 28, 28, 1].

    Returns: {"l0": float32 [B] (pixel count), "l2": float32 [B], "linf": float32 [B]}.
    """
    diff = _flat(tf.cast(perturbed, tf.float32) - tf.cast(reference, tf.float32))
    return {
        "l0": tf.reduce_sum(tf.cast(tf.abs(diff) > l0_tolerance, tf.float32), axis=1),
        "l2": tf.norm(diff, axis=1),
        "linf": tf.reduce_max(tf.abs(diff), axis=1),
    }


def project(images, candidates, norm: str, epsilon):
    """Projects ``candidates`` onto {x : ||x - images||_norm <= epsilon} ∩ [0, 1]^784.

    Args:
      images, candidates: float32 [B, 28, 28, 1]; images in [0, 1].
      norm: "l0", "l2" or "linf".
      epsilon: scalar or [B]; for "l0" the number of pixels allowed to change (floored).
        The l0 projection keeps the floor(epsilon) largest changes (the Euclidean-closest
        point of the l0 ball).
    Returns: float32 [B, 28, 28, 1] in [0, 1]. Clipping to [0, 1] only moves pixels toward
    the original, so the result stays inside the ball.
    """
    check_norm(norm)
    images = tf.convert_to_tensor(images, tf.float32)
    delta = tf.convert_to_tensor(candidates, tf.float32) - images
    eps = tf.reshape(tf.cast(epsilon, tf.float32), [-1, 1, 1, 1])
    if norm == "linf":
        delta = tf.clip_by_value(delta, -eps, eps)
    elif norm == "l2":
        norms = tf.norm(_flat(delta), axis=1)[:, None, None, None]
        delta = delta * tf.minimum(1.0, eps / tf.maximum(norms, 1e-12))
    else:
        flat = tf.abs(_flat(delta))
        k = tf.cast(tf.floor(tf.reshape(eps, [-1])), tf.int32)
        k = tf.broadcast_to(tf.clip_by_value(k, 0, flat.shape[1]), tf.shape(flat)[:1])
        ranks = tf.argsort(tf.argsort(flat, axis=1, direction="DESCENDING", stable=True), axis=1)
        keep = ranks < k[:, None]
        delta = delta * tf.reshape(tf.cast(keep, tf.float32), tf.shape(delta))
    return tf.clip_by_value(images + delta, 0.0, 1.0)


class Misclassification:
    """Criterion: adversarial iff argmax(logits) != label. ``(logits [B, C], labels [B]) -> bool [B]``."""

    def __call__(self, logits, labels):
        return tf.not_equal(tf.argmax(logits, axis=-1), tf.cast(labels, tf.int64))

    def __repr__(self):
        return "Misclassification()"


MISCLASSIFICATION = Misclassification()


@dataclasses.dataclass(frozen=True)
class Verified:
    """Verified candidates of one batch (numpy).

    adversarials: float32 [B, 28, 28, 1] in [0, 1] (clipped, projected if an epsilon was given).
    is_adversarial: bool [B], from classifying `adversarials` again.
    predictions: int64 [B], the model's classes for `adversarials`.
    distances: {"l0", "l2", "linf"} -> float32 [B], from the original images (see module doc).
    """

    adversarials: np.ndarray
    is_adversarial: np.ndarray
    predictions: np.ndarray
    distances: dict


def verify(model, images, labels, candidates, *, norm=None, epsilon=None,
           criterion=MISCLASSIFICATION, l0_tolerance: float = L0_TOLERANCE) -> Verified:
    """Re-checks candidate adversarials. The only place that decides success.

    Args:
      model: callable images [N, 28, 28, 1] -> logits [N, C].
      images: float32 [B, 28, 28, 1] in [0, 1], the originals.
      labels: int [B], true classes.
      candidates: float [B, 28, 28, 1], anything (out of range, NaN: handled).
      norm, epsilon: optional threat model; epsilon scalar or [B] (norm units, see module doc).
        With an epsilon, candidates are projected onto the epsilon-ball and success also
        requires the measured distance <= epsilon.
      criterion: (logits, labels) -> bool [B]; default misclassification.
    """
    images = check_images(images)
    labels = check_labels(labels, images.shape[0])
    candidates = tf.convert_to_tensor(candidates, tf.float32)
    if candidates.shape != images.shape:
        raise ValueError(f"candidates have shape {candidates.shape}, images {images.shape}")
    finite = tf.reduce_all(tf.math.is_finite(_flat(candidates)), axis=1)
    candidates = tf.where(finite[:, None, None, None], candidates, images)
    candidates = tf.clip_by_value(candidates, 0.0, 1.0)
    if epsilon is not None:
        if norm is None:
            raise ValueError("verify: an epsilon needs a norm")
        candidates = project(images, candidates, norm, epsilon)
    logits = model(candidates)
    success = tf.logical_and(criterion(logits, labels), finite)
    dist = distances(images, candidates, l0_tolerance=l0_tolerance)
    if epsilon is not None:
        eps = tf.broadcast_to(tf.reshape(tf.cast(epsilon, tf.float32), [-1]), tf.shape(success))
        slack = 1e-6 * eps + 1e-6 if norm != "l0" else 0.0
        success = tf.logical_and(success, dist[norm] <= eps + slack)
    return Verified(
        adversarials=candidates.numpy(),
        is_adversarial=success.numpy(),
        predictions=tf.argmax(logits, axis=-1).numpy(),
        distances={k: v.numpy() for k, v in dist.items()},
    )
