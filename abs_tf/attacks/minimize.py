"""Smallest verified adversarial per image, and the line search shared by several attacks.

`minimize(attack, model, images, labels)`:

* images the model already misclassifies are adversarial at distance 0 (SPEC §4);
* a `MinimizationAttack` runs once; its result is verified;
* a fixed-epsilon attack with a ``direction`` method (FGM/FGSM: one step along a fixed
  direction) is searched along that direction (one gradient per image, the same candidates
  as re-running it at each epsilon);
* any other fixed-epsilon attack is run on a coarse epsilon grid (ascending; each image
  leaves the grid at its first verified success), then bisected per image between the last
  failing and the first succeeding epsilon. All stages are batched over the images still
  in play; every candidate is verified; each image keeps its smallest verified adversarial
  in the attack's norm. Success need not be monotone in epsilon; the search reports the
  best it verified.

Failed images have distance +inf in all norms, so medians and accuracies come out right.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import tensorflow as tf

from abs_tf.attacks.base import (IMAGES_SPEC, LABELS_SPEC, MinimizationAttack, _check_inputs)
from abs_tf.attacks.verify import L0_TOLERANCE, NORMS, Verified, check_norm, verify

DEFAULT_GRIDS = {
    "linf": (0.005, 0.01, 0.02, 0.03, 0.05, 0.075, 0.1, 0.15, 0.2, 0.25, 0.3, 0.4, 0.5, 0.75, 1.0),
    "l2": (0.1, 0.25, 0.5, 0.75, 1.0, 1.25, 1.5, 2.0, 2.5, 3.0, 4.0, 5.0, 6.0, 8.0, 10.0, 14.0, 20.0, 28.0),
    "l0": (1, 2, 4, 8, 12, 16, 24, 32, 48, 64, 96, 128, 256, 784),
}
# Line search along a direction d: scales t of x + t d (t = 1: the direction's own endpoint).
DEFAULT_SCALES = (0.1, 0.25, 0.5, 0.75, 1.0, 1.25, 1.5, 2.0, 3.0, 4.0, 6.0, 8.0, 16.0, 32.0, 64.0)


@dataclasses.dataclass(frozen=True)
class MinimalResult:
    """Smallest verified adversarial per image (numpy).

    attack: repr of the attack.  norm: the norm minimised ("l0" | "l2" | "linf").
    adversarials: float32 [B, 28, 28, 1] in [0, 1]; the original image where none was found.
    is_adversarial: bool [B]; True for clean-misclassified images (distance 0).
    predictions: int64 [B], the model's classes for `adversarials`.
    distances: {"l0", "l2", "linf"} -> float32 [B], of the kept adversarial; +inf where none.
    queries: model queries per image for the whole search (see `AttackResult.queries`).
    """

    attack: str
    norm: str
    adversarials: np.ndarray
    is_adversarial: np.ndarray
    predictions: np.ndarray
    distances: dict
    queries: float

    def accuracy(self, epsilon: float, norm=None) -> float:
        """Robust accuracy: fraction of images with no verified adversarial within epsilon."""
        return float(np.mean(self.distances[norm or self.norm] > epsilon))

    def median(self, norm=None) -> float:
        """Median distance (inf counts as larger than everything)."""
        return float(np.median(self.distances[norm or self.norm]))


class _Best:
    """Keeps per image the verified adversarial with the smallest distance in `norm`."""

    def __init__(self, images: np.ndarray, norm: str):
        b = images.shape[0]
        self.norm = norm
        self.adversarials = images.copy()
        self.found = np.zeros(b, bool)
        self.predictions = np.full(b, -1, np.int64)
        self.distances = {n: np.full(b, np.inf, np.float32) for n in NORMS}

    def update(self, idx: np.ndarray, v: Verified) -> np.ndarray:
        """Takes the verified successes of images ``idx``; returns their success mask."""
        better = v.is_adversarial & (v.distances[self.norm] < self.distances[self.norm][idx])
        take = idx[better]
        self.adversarials[take] = v.adversarials[better]
        self.found[take] = True
        self.predictions[take] = v.predictions[better]
        for n in NORMS:
            self.distances[n][take] = v.distances[n][better]
        return v.is_adversarial

    def result(self, attack: str, queries: float) -> MinimalResult:
        return MinimalResult(attack=attack, norm=self.norm, adversarials=self.adversarials,
                             is_adversarial=self.found.copy(), predictions=self.predictions,
                             distances=self.distances, queries=queries)


def bracket_search(evaluate, idx: np.ndarray, grid, bisection_steps: int, best: _Best) -> None:
    """Coarse ascending grid, then per-image bisection, over a budget parameter t.

    Args:
      evaluate: (idx int [n], t float32 [n]) -> `Verified` for images ``idx`` at budgets t.
      idx: images to search. grid: ascending t values > 0. best: tracker updated in place.
    """
    grid = np.asarray(grid, np.float32)
    if grid.ndim != 1 or grid.size == 0 or np.any(grid <= 0) or np.any(np.diff(grid) <= 0):
        raise ValueError(f"grid must be ascending values > 0, got {grid!r}")
    lo = np.zeros(idx.size, np.float32)
    hi = np.full(idx.size, np.inf, np.float32)
    pending = np.ones(idx.size, bool)
    for t in grid:
        if not pending.any():
            break
        sel = np.flatnonzero(pending)
        success = best.update(idx[sel], evaluate(idx[sel], np.full(sel.size, t, np.float32)))
        hi[sel[success]] = t
        lo[sel[~success]] = t
        pending[sel[success]] = False
    for _ in range(bisection_steps):
        sel = np.flatnonzero(np.isfinite(hi))
        if sel.size == 0:
            break
        mid = (lo[sel] + hi[sel]) / 2
        success = best.update(idx[sel], evaluate(idx[sel], mid.astype(np.float32)))
        hi[sel[success]] = mid[success]
        lo[sel[~success]] = mid[~success]


def line_search(model, images, labels, directions, *, scales=DEFAULT_SCALES, bisection_steps: int = 10,
                norm: str = "l2", l0_tolerance: float = L0_TOLERANCE) -> MinimalResult:
    """Smallest t per image such that clip(x + t d, 0, 1) is a verified adversarial.

    Args:
      model: callable images -> logits. images: float32 [B, 28, 28, 1] in [0, 1]; labels int [B].
      directions: float32 [B, 28, 28, 1] (any scale; zero rows never succeed).
      scales: ascending coarse values of t > 0, then ``bisection_steps`` bisections.
      norm: which distance decides "smallest" when several t succeed.
    Returns: `MinimalResult` (queries = model calls per image of this search).
    """
    images, labels = _check_inputs(images, labels)
    x, y = images.numpy(), labels.numpy()
    d = np.asarray(directions, np.float32)
    if d.shape != x.shape:
        raise ValueError(f"directions have shape {d.shape}, images {x.shape}")
    calls = [0]

    def evaluate(idx, t):
        calls[0] += idx.size
        candidates = np.clip(x[idx] + t[:, None, None, None] * d[idx], 0.0, 1.0)
        return verify(model, x[idx], y[idx], candidates, l0_tolerance=l0_tolerance)

    best = _Best(x, check_norm(norm))
    bracket_search(evaluate, np.arange(x.shape[0]), scales, bisection_steps, best)
    return best.result("line_search", calls[0] / max(x.shape[0], 1))


def minimize(attack, model, images, labels, *, grid=None, bisection_steps: int = 10,
             l0_tolerance: float = L0_TOLERANCE) -> MinimalResult:
    """Smallest verified adversarial per image that ``attack`` finds (see module doc).

    Args:
      attack: a `FixedEpsilonAttack` or `MinimizationAttack`.
      model: callable images float32 [N, 28, 28, 1] in [0, 1] -> logits [N, C].
      images: float32 [B, 28, 28, 1] in [0, 1]. labels: int [B], true classes.
      grid: ascending epsilons (attack's norm, pixel units) for the coarse stage; default
        `DEFAULT_GRIDS[attack.norm]`. bisection_steps: halvings of each image's bracket
        (precision = bracket width / 2**steps).
    Returns: `MinimalResult`.
    """
    images, labels = _check_inputs(images, labels)
    norm = check_norm(attack.norm)
    handle = attack._handle(model)
    logits_fn = handle.counted.logits
    start = handle.counted.queries
    x, y = images.numpy(), labels.numpy()
    best = _Best(x, norm)
    best.update(np.arange(x.shape[0]), verify(logits_fn, x, y, x, l0_tolerance=l0_tolerance))
    todo = np.flatnonzero(~best.found)
    grid = DEFAULT_GRIDS[norm] if grid is None else grid

    if todo.size == 0:
        pass
    elif isinstance(attack, MinimizationAttack):
        candidates = attack._candidates(handle, tf.constant(x[todo]), tf.constant(y[todo]))
        best.update(todo, verify(logits_fn, x[todo], y[todo], candidates, l0_tolerance=l0_tolerance))
    elif hasattr(attack, "direction"):
        direction_fn = attack._compile(handle.counted, "direction", attack.direction, [IMAGES_SPEC, LABELS_SPEC])
        d = np.zeros_like(x)
        d[todo] = direction_fn(tf.constant(x[todo]), tf.constant(y[todo])).numpy()

        def evaluate(idx, t):
            candidates = np.clip(x[idx] + t[:, None, None, None] * d[idx], 0.0, 1.0)
            return verify(logits_fn, x[idx], y[idx], candidates, norm=norm, epsilon=t,
                          l0_tolerance=l0_tolerance)

        bracket_search(evaluate, todo, grid, bisection_steps, best)
    else:
        def evaluate(idx, t):
            eps = tf.constant(t)
            candidates = attack._candidates(handle, tf.constant(x[idx]), tf.constant(y[idx]), eps)
            return verify(logits_fn, x[idx], y[idx], candidates, norm=norm, epsilon=t,
                          l0_tolerance=l0_tolerance)

        bracket_search(evaluate, todo, grid, bisection_steps, best)
    return best.result(repr(attack), (handle.counted.queries - start) / max(x.shape[0], 1))


def best_of(results, norm: str) -> MinimalResult:
    """Per image, the smallest adversarial in ``norm`` over several `MinimalResult`s of the
    same images (the evaluation's "all attacks" number). queries: summed."""
    results = list(results)
    if not results:
        raise ValueError("best_of needs at least one result")
    check_norm(norm)
    best = _Best(np.asarray(results[0].adversarials), norm)
    everything = np.arange(best.found.size)
    for r in results:
        best.update(everything, Verified(r.adversarials, r.is_adversarial, r.predictions, r.distances))
    return best.result(" | ".join(r.attack for r in results), float(sum(r.queries for r in results)))
