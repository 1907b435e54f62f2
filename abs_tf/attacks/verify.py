"""The one verifier every adversarial passes through, and the distances it measures.

Units: pixels in [0, 1]. ``l0`` = number of pixels whose value changed by more than
``l0_tolerance`` (default `L0_TOLERANCE` = 1e-5, far below one grey level 1/255, above float32
round-off); ``l1`` = sum of absolute pixel changes; ``l2`` = Euclidean norm of the difference
over the 784 pixels; ``linf`` = the largest absolute pixel change.

One threshold rule (`within`) decides "distance within epsilon" everywhere (the verifier,
`MinimalResult.accuracy`, medians): ``d <= eps * (1 + 1e-6) + 1e-6`` for l1/l2/linf, so a
perturbation of exactly 0.3 that float32 measures as 0.30000003 counts as within 0.3;
``d <= eps`` for l0 (a pixel count; the projection keeps floor(eps) pixels).

`verify` (1) replaces candidates containing NaN/Inf by the original image, (2) clips to
[0, 1], (3) if an epsilon is given, projects the perturbation onto the epsilon-ball of the
attack's norm, (4) classifies the result again and (5) measures the distances. A candidate is
adversarial only if the model, asked again, misclassifies it (and, with an epsilon, its
distance is `within` epsilon). Attacks return raw candidates; only `verify` decides success.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import tensorflow as tf

from abs_tf.attacks.criteria import MISCLASSIFICATION, Misclassification  # noqa: F401  (re-exported)
from abs_tf.checks import check_images, check_labels

NORMS = ("l0", "l1", "l2", "linf")
L0_TOLERANCE = 1e-5
RELATIVE_SLACK = 1e-6
ABSOLUTE_SLACK = 1e-6


def check_norm(norm: str) -> str:
    if norm not in NORMS:
        raise ValueError(f"norm must be one of {NORMS}, got {norm!r}")
    return norm


def _flat(x):
    """[B, ...] -> [B, D], keeping D static when the trailing shape is known."""
    tail = x.shape[1:]
    if tail.is_fully_defined():
        return tf.reshape(x, [-1, int(np.prod(tail))])
    return tf.reshape(x, [tf.shape(x)[0], -1])


def threshold(epsilon, norm: str):
    """The largest distance that counts as within ``epsilon`` (see module doc); numpy."""
    check_norm(norm)
    eps = np.asarray(epsilon, np.float64)
    if norm == "l0":
        return eps
    return eps * (1 + RELATIVE_SLACK) + ABSOLUTE_SLACK


def within(distance, epsilon, norm: str) -> np.ndarray:
    """bool: ``distance`` (any shape) is within ``epsilon`` (broadcast) in ``norm``: THE rule."""
    return np.asarray(distance, np.float64) <= threshold(epsilon, norm)


def distances(reference, perturbed, *, l0_tolerance: float = L0_TOLERANCE) -> dict:
    """All three distances between two image batches [B, 28, 28, 1].

    Returns: {"l0": float32 [B] (pixel count), "l1", "l2", "linf": float32 [B]}.
    """
    diff = _flat(tf.cast(perturbed, tf.float32) - tf.cast(reference, tf.float32))
    return {
        "l0": tf.reduce_sum(tf.cast(tf.abs(diff) > l0_tolerance, tf.float32), axis=1),
        "l1": tf.reduce_sum(tf.abs(diff), axis=1),
        "l2": tf.norm(diff, axis=1),
        "linf": tf.reduce_max(tf.abs(diff), axis=1),
    }


def project(images, candidates, norm: str, epsilon):
    """Projects ``candidates`` onto {x : ||x - images||_norm <= epsilon} ∩ [0, 1]^784.

    Args:
      images, candidates: float32 [B, 28, 28, 1]; images in [0, 1].
      norm: "l0", "l1", "l2" or "linf".
      epsilon: scalar or [B]; for "l0" the number of pixels allowed to change (floored).
        The l0 projection keeps the floor(epsilon) largest changes (the Euclidean-closest
        point of the l0 ball); the l1 projection is the Euclidean one (Duchi et al. 2008).
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
    elif norm == "l1":
        delta = tf.reshape(project_l1(_flat(delta), tf.reshape(eps, [-1])), tf.shape(delta))
    else:
        flat = tf.abs(_flat(delta))
        k = tf.cast(tf.floor(tf.reshape(eps, [-1])), tf.int32)
        k = tf.broadcast_to(tf.clip_by_value(k, 0, tf.shape(flat)[1]), tf.shape(flat)[:1])
        ranks = tf.argsort(tf.argsort(flat, axis=1, direction="DESCENDING", stable=True), axis=1)
        keep = ranks < k[:, None]
        delta = delta * tf.reshape(tf.cast(keep, tf.float32), tf.shape(delta))
    return tf.clip_by_value(images + delta, 0.0, 1.0)


def project_l1(flat, eps):
    """Euclidean projection of rows ``flat`` [B, D] onto the l1 balls of radii ``eps`` [B]
    (sort-based, Duchi et al. 2008); rows already inside are returned unchanged."""
    flat = tf.convert_to_tensor(flat, tf.float32)
    eps = tf.broadcast_to(tf.cast(eps, tf.float32), tf.shape(flat)[:1])
    size = tf.abs(flat)
    mu = tf.sort(size, axis=1, direction="DESCENDING")
    cumsum = tf.cumsum(mu, axis=1)
    ranks = tf.cast(tf.range(1, tf.shape(flat)[1] + 1), tf.float32)[None]
    active = mu * ranks > cumsum - eps[:, None]
    rho = tf.reduce_max(tf.where(active, ranks, tf.zeros_like(ranks)), axis=1)     # >= 1 when eps > 0
    rho = tf.maximum(rho, 1.0)
    theta = (tf.gather(cumsum, tf.cast(rho, tf.int32) - 1, batch_dims=1) - eps) / rho
    projected = tf.sign(flat) * tf.nn.relu(size - theta[:, None])
    inside = tf.reduce_sum(size, axis=1) <= eps
    return tf.where(inside[:, None], flat, projected)


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
      criterion: a `Criterion` (``labels`` are its classes); default `Misclassification()`.
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
    success = success.numpy()
    if epsilon is not None:
        success &= within(dist[norm].numpy(), np.broadcast_to(np.asarray(epsilon, np.float32), success.shape), norm)
    return Verified(
        adversarials=candidates.numpy(),
        is_adversarial=success,
        predictions=tf.argmax(logits, axis=-1).numpy(),
        distances={k: v.numpy() for k, v in dist.items()},
    )
