"""Additive noise attacks and the blended-noise start: line searches along random directions.

* `AdditiveGaussianNoise` (L2): directions d ~ N(0, I), scaled to unit L2 norm; the smallest
  amplitude t with ``clip(x + t d, 0, 1)`` adversarial (foolbox's AdditiveGaussianNoiseAttack).
* `AdditiveUniformNoise` (L∞): d ~ U(-1, 1)^784 (L∞ norm <= 1); the same search.
* `blended_noise` (the Boundary attack's start, foolbox's blended uniform noise): u ~ U(0, 1)^784,
  the smallest t in (0, 1] with ``x + t (u - x)`` adversarial.

Each image gets ``repetitions`` directions; all (image, direction) rows are searched at once:
an ascending grid of amplitudes (a row leaves the grid at its first adversarial), then
``bisection_steps`` halvings of each row's bracket. So a search costs len(scales) +
bisection_steps model calls whatever the number of images and repetitions. Per image the
direction whose adversarial is closest in the attack's norm is kept, with its amplitude:
``clip(x + amplitude * direction)`` was evaluated and found adversarial, and
``amplitude * (1 - 2^-bisection_steps)``-ish below it was not (within the bracket's precision).
Clipping to [0, 1] only shrinks the perturbation, so the measured L2 (L∞) distance is at most
the amplitude.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from abs_tf.attacks.decision.oracle import (DEFAULT_MAX_BATCH, DecisionAttack, DecisionOracle, DecisionResult,
                                            check_positive, flat, rng, unflat)

SCALES = {
    "l2": tuple(float(s) for s in np.geomspace(0.1, 40.0, 24)),
    "linf": tuple(float(s) for s in np.geomspace(0.005, 2.0, 22)),
    "blend": tuple(float(s) for s in np.geomspace(0.01, 1.0, 16)),
}
_STREAMS = {"gaussian": 11, "uniform": 12, "blend": 13}


@dataclasses.dataclass(frozen=True)
class LineSearchResult(DecisionResult):
    """`DecisionResult` plus, per image, the kept search: ``amplitudes`` float32 [B] (t; +inf
    where none was adversarial) and ``directions`` float32 [B, 28, 28, 1] (d; candidates are
    ``clip(images + amplitudes * directions, 0, 1)``)."""

    amplitudes: np.ndarray
    directions: np.ndarray


def _norm(diff, norm):
    if norm == "l2":
        return np.linalg.norm(diff, axis=1)
    if norm == "linf":
        return np.abs(diff).max(axis=1)
    raise ValueError(f"norm must be 'l2' or 'linf', got {norm!r}")


def line_search(oracle: DecisionOracle, images, directions, scales, *, bisection_steps: int = 10,
                norm: str = "l2") -> LineSearchResult:
    """Smallest t per (direction, image) with ``clip(x + t d, 0, 1)`` adversarial; per image the
    closest in ``norm`` (see module doc).

    Args:
      oracle: the images' `DecisionOracle`. images: float32 [B, 28, 28, 1] in [0, 1].
      directions: float32 [R, B, 28, 28, 1] (R directions per image).
      scales: ascending amplitudes t > 0 of the coarse grid.
      bisection_steps: halvings of each bracket after the grid.
      norm: "l2" or "linf", which decides the closest direction.
    """
    scales = np.asarray(scales, np.float32)
    if scales.ndim != 1 or scales.size == 0 or np.any(scales <= 0) or np.any(np.diff(scales) <= 0):
        raise ValueError(f"scales must be ascending values > 0, got {scales!r}")
    if bisection_steps < 0:
        raise ValueError(f"bisection_steps must be >= 0, got {bisection_steps}")
    x = flat(images)
    b = x.shape[0]
    d = np.asarray(directions, np.float32).reshape(-1, b, x.shape[1])
    reps = d.shape[0]
    image = np.tile(np.arange(b), reps)
    rows_x, rows_d = x[image], d.reshape(reps * b, -1)
    start = oracle.queries.copy()
    lo = np.zeros(image.size, np.float32)
    hi = np.full(image.size, np.inf, np.float32)
    pending = np.ones(image.size, bool)
    for t in scales:
        sel = np.flatnonzero(pending)
        sel = sel[oracle.affordable(image[sel])]
        if sel.size == 0:
            break
        ok = oracle(image[sel], np.clip(rows_x[sel] + t * rows_d[sel], 0.0, 1.0))
        hi[sel[ok]] = t
        lo[sel[~ok]] = t
        pending[sel[ok]] = False
    for _ in range(bisection_steps):
        sel = np.flatnonzero(np.isfinite(hi))
        sel = sel[oracle.affordable(image[sel])]
        if sel.size == 0:
            break
        mid = ((lo[sel] + hi[sel]) / 2).astype(np.float32)
        ok = oracle(image[sel], np.clip(rows_x[sel] + mid[:, None] * rows_d[sel], 0.0, 1.0))
        hi[sel[ok]] = mid[ok]
        lo[sel[~ok]] = mid[~ok]

    found_rows = np.isfinite(hi)
    t = np.where(found_rows, hi, 0.0).astype(np.float32)
    candidates = np.clip(rows_x + t[:, None] * rows_d, 0.0, 1.0)
    size = np.where(found_rows, _norm(candidates - rows_x, norm), np.inf).reshape(reps, b)
    best = np.argmin(size, axis=0)                                     # [B]: kept direction
    rows = best * b + np.arange(b)
    found = np.isfinite(size[best, np.arange(b)])
    return LineSearchResult(
        candidates=unflat(np.where(found[:, None], candidates[rows], x)), found=found,
        queries=oracle.queries - start, amplitudes=np.where(found, hi[rows], np.inf).astype(np.float32),
        directions=unflat(rows_d[rows]))


def noise_directions(keys, distribution: str, repetitions: int) -> np.ndarray:
    """float32 [R, B, 28, 28, 1]: per image ``repetitions`` directions from its own stream;
    "gaussian": unit L2 norm; "uniform": U(-1, 1) per pixel."""
    if distribution not in ("gaussian", "uniform"):
        raise ValueError(f"distribution must be 'gaussian' or 'uniform', got {distribution!r}")
    out = np.empty((repetitions, len(keys), 784), np.float32)
    for i, key in enumerate(keys):
        g = rng(key, _STREAMS[distribution])
        if distribution == "gaussian":
            v = g.standard_normal((repetitions, 784))
            out[:, i] = v / np.linalg.norm(v, axis=1, keepdims=True)
        else:
            out[:, i] = g.uniform(-1.0, 1.0, (repetitions, 784))
    return unflat(out.reshape(-1, 784)).reshape(repetitions, len(keys), 28, 28, 1)


def additive_noise(oracle, images, keys, *, distribution: str = "gaussian", repetitions: int = 10, scales=None,
                   bisection_steps: int = 10) -> LineSearchResult:
    """The noise attack's algorithm (module doc): L2 for "gaussian", L∞ for "uniform"."""
    norm = "l2" if distribution == "gaussian" else "linf"
    directions = noise_directions(keys, distribution, repetitions)
    return line_search(oracle, images, directions, SCALES[norm] if scales is None else scales,
                       bisection_steps=bisection_steps, norm=norm)


def blended_noise(oracle, images, keys, *, repetitions: int = 4, scales=None,
                  bisection_steps: int = 10) -> LineSearchResult:
    """Blended uniform noise (module doc), closest in L2: the Boundary attack's start."""
    x = flat(images)
    noise = np.stack([rng(key, _STREAMS["blend"]).uniform(0.0, 1.0, (repetitions, 784)) for key in keys], 1)
    directions = (noise - x[None]).astype(np.float32).reshape(repetitions, -1, 28, 28, 1)
    return line_search(oracle, images, directions, SCALES["blend"] if scales is None else scales,
                       bisection_steps=bisection_steps, norm="l2")


class _AdditiveNoise(DecisionAttack):
    distribution = ""
    accepts_starting_points = False

    def __init__(self, *, repetitions: int = 10, bisection_steps: int = 10, scales=None,
                 max_batch: int = DEFAULT_MAX_BATCH):
        check_positive(repetitions=repetitions, max_batch=max_batch)
        if bisection_steps < 0:
            raise ValueError(f"bisection_steps must be >= 0, got {bisection_steps}")
        self._store(repetitions=int(repetitions), bisection_steps=int(bisection_steps),
                    scales=None if scales is None else tuple(float(s) for s in scales), max_batch=int(max_batch))

    def algorithm(self, oracle, images, keys, starting_points):
        return additive_noise(oracle, images, keys, distribution=self.distribution, repetitions=self.repetitions,
                              scales=self.scales, bisection_steps=self.bisection_steps)


class AdditiveGaussianNoise(_AdditiveNoise):
    """Smallest L2 amplitude of Gaussian noise that flips the decision (module doc).

    Args: repetitions (directions per image, 10), bisection_steps (10), scales (coarse
    amplitudes; default `SCALES["l2"]`, 0.1 .. 40), max_batch (images per model call, 256).
    Queries per image: <= repetitions x (len(scales) + bisection_steps).
    """

    norm = "l2"
    distribution = "gaussian"


class AdditiveUniformNoise(_AdditiveNoise):
    """Smallest L∞ amplitude of uniform noise that flips the decision (module doc); the
    arguments of `AdditiveGaussianNoise` (default scales `SCALES["linf"]`, 0.005 .. 2: beyond 1
    the clipped noise saturates toward salt-and-pepper images; the L∞ distance stays <= 1)."""

    norm = "linf"
    distribution = "uniform"
