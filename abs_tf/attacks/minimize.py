"""Smallest verified adversarial per image, and the line search shared by several attacks.

`minimize(attack, model, images, labels)`:

* images the model already misclassifies are adversarial at distance 0 (SPEC §4);
* a `MinimizationAttack` runs once (from ``starting_points`` if given); its result is verified;
* a fixed-epsilon attack with a ``direction`` method (FGM/FGSM: one step along a fixed
  direction) is searched along that direction (one gradient per image, the same candidates
  as re-running it at each epsilon);
* any other fixed-epsilon attack is run on a coarse epsilon grid (ascending; each image
  leaves the grid at its first verified success), then bisected per image between the last
  failing and the first succeeding epsilon. All stages are batched over the images still
  in play; every candidate is verified; each image keeps its smallest verified adversarial
  in the attack's norm. Success need not be monotone in epsilon; the search reports the
  best it verified.

Bookkeeping (queries per image, seeds, criteria, budgets, no-gradient failures) is
`abs_tf.attacks.session.Session`; see `abs_tf.attacks.base` and `abs_tf.attacks.results`.
"""

from __future__ import annotations

import functools

import numpy as np
import tensorflow as tf

from abs_tf.attacks.base import IMAGES_SPEC, LABELS_SPEC, SEED_SPEC, MinimizationAttack
from abs_tf.attacks.session import Session, images_digest
from abs_tf.attacks.criteria import MISCLASSIFICATION, check_criterion
from abs_tf.attacks.results import Best, Counts, MinimalResult
from abs_tf.attacks.verify import L0_TOLERANCE, check_norm, verify
from abs_tf.checks import check_images, check_labels

DEFAULT_GRIDS = {
    "linf": (0.005, 0.01, 0.02, 0.03, 0.05, 0.075, 0.1, 0.15, 0.2, 0.25, 0.3, 0.4, 0.5, 0.75, 1.0),
    "l2": (0.1, 0.25, 0.5, 0.75, 1.0, 1.25, 1.5, 2.0, 2.5, 3.0, 4.0, 5.0, 6.0, 8.0, 10.0, 14.0, 20.0, 28.0),
    "l1": (1.0, 2.0, 4.0, 6.0, 8.0, 10.0, 15.0, 20.0, 30.0, 40.0, 60.0, 100.0, 200.0, 400.0, 784.0),
    "l0": (1, 2, 4, 8, 12, 16, 24, 32, 48, 64, 96, 128, 256, 784),
}
# Line search along a direction d: scales t of x + t d (t = 1: the direction's own endpoint).
DEFAULT_SCALES = (0.1, 0.25, 0.5, 0.75, 1.0, 1.25, 1.5, 2.0, 3.0, 4.0, 6.0, 8.0, 16.0, 32.0, 64.0)


def bracket_search(evaluate, idx: np.ndarray, grid, bisection_steps: int, best: Best, *, admit=None) -> None:
    """Coarse ascending grid, then per-image bisection, over a budget parameter t.

    Args:
      evaluate: (idx int [n], t float32 [n]) -> (`Verified`, usable bool [n] or None) for
        images ``idx`` at budgets t.
      idx: images to search. grid: ascending t values > 0. best: tracker updated in place.
      admit: optional ``idx -> idx`` filter applied before each stage (query budgets).
    """
    grid = np.asarray(grid, np.float32)
    if grid.ndim != 1 or grid.size == 0 or np.any(grid <= 0) or np.any(np.diff(grid) <= 0):
        raise ValueError(f"grid must be ascending values > 0, got {grid!r}")
    admit = admit or (lambda i: i)

    def admitted(sel):
        """Positions ``sel`` whose images ``admit`` lets through."""
        return sel[np.isin(idx[sel], admit(idx[sel]))]

    lo = np.zeros(idx.size, np.float32)
    hi = np.full(idx.size, np.inf, np.float32)
    pending = np.ones(idx.size, bool)
    for t in grid:
        sel = admitted(np.flatnonzero(pending))
        pending[:] = False
        pending[sel] = True  # images out of budget leave the search
        if sel.size == 0:
            break
        v, usable = evaluate(idx[sel], np.full(sel.size, t, np.float32))
        success = best.update(idx[sel], v, usable)
        hi[sel[success]] = t
        lo[sel[~success]] = t
        pending[sel[success]] = False
    for _ in range(bisection_steps):
        sel = admitted(np.flatnonzero(np.isfinite(hi)))
        if sel.size == 0:
            break
        mid = ((lo[sel] + hi[sel]) / 2).astype(np.float32)
        v, usable = evaluate(idx[sel], mid)
        success = best.update(idx[sel], v, usable)
        hi[sel[success]] = mid[success]
        lo[sel[~success]] = mid[~success]


def line_search(model, images, labels, directions, *, scales=DEFAULT_SCALES, bisection_steps: int = 10,
                norm: str = "l2", criterion=MISCLASSIFICATION, l0_tolerance: float = L0_TOLERANCE) -> MinimalResult:
    """Smallest t per image such that clip(x + t d, 0, 1) is a verified adversarial.

    Args:
      model: callable images -> logits. images: float32 [B, 28, 28, 1] in [0, 1]; labels int [B].
      directions: float32 [B, 28, 28, 1] (any scale; zero rows never succeed).
      scales: ascending coarse values of t > 0, then ``bisection_steps`` bisections.
      norm: which distance decides "smallest" when several t succeed.
    Returns: `MinimalResult` (queries = model calls per image of this search).
    """
    images = check_images(images)
    labels = check_labels(labels, images.shape[0])
    criterion = check_criterion(criterion)
    x, y = images.numpy(), labels.numpy()
    d = np.asarray(directions, np.float32)
    if d.shape != x.shape:
        raise ValueError(f"directions have shape {d.shape}, images {x.shape}")
    calls = np.zeros(x.shape[0])

    def evaluate(idx, t):
        calls[idx] += 1
        candidates = np.clip(x[idx] + t[:, None, None, None] * d[idx], 0.0, 1.0)
        return verify(model, x[idx], y[idx], candidates, criterion=criterion, l0_tolerance=l0_tolerance), None

    best = Best(x, check_norm(norm))
    bracket_search(evaluate, np.arange(x.shape[0]), scales, bisection_steps, best)
    return best.result("line_search", criterion=criterion, labels=y, digest=images_digest(x),
                       ledger=Counts(calls, np.zeros_like(calls), calls), budget_exhausted=np.zeros(x.shape[0], bool))


def minimize(attack, model, images, labels, *, grid=None, bisection_steps: int = 10, criterion=MISCLASSIFICATION,
             seed: int = 0, starting_points=None, max_queries=None,
             l0_tolerance: float = L0_TOLERANCE) -> MinimalResult:
    """Smallest verified adversarial per image that ``attack`` finds (see module doc).

    Args:
      attack: a `FixedEpsilonAttack` or `MinimizationAttack`.
      model: callable images float32 [N, 28, 28, 1] in [0, 1] -> logits [N, C].
      images: float32 [B, 28, 28, 1] in [0, 1]. labels: int [B], the criterion's classes.
      grid: ascending epsilons (attack's norm, pixel units) for the coarse stage; default
        `DEFAULT_GRIDS[attack.norm]`. bisection_steps: halvings of each image's bracket
        (precision = bracket width / 2**steps).
      criterion, seed, max_queries: as `FixedEpsilonAttack.__call__` (the budget is checked
        before each stage of the search). starting_points: for minimization attacks that
        accept them (refused, with a count, where not adversarial).
    Returns: `MinimalResult`.
    """
    norm = check_norm(attack.norm)
    session = Session(attack, model, images, labels, criterion=criterion, seed=seed, max_queries=max_queries,
                       l0_tolerance=l0_tolerance)
    x, y = session.x, session.y
    best = Best(x, norm, predictions=session.clean.predictions)
    best.update(np.arange(session.batch), session.clean)
    todo = session.todo
    grid = DEFAULT_GRIDS[norm] if grid is None else grid

    if todo.size == 0:
        pass
    elif isinstance(attack, MinimizationAttack):
        start = attack.check_starting_points(session, starting_points)
        todo = session.within_budget(todo)
        if todo.size:
            candidates, usable = session.candidates(todo, None, start)
            best.update(todo, session.verify(todo, candidates), usable)
    else:
        if starting_points is not None:
            raise TypeError(f"{type(attack).__name__} is a fixed-epsilon attack: it takes no starting_points")
        if hasattr(attack, "direction"):
            counted = session.model_for_attack()
            direction_fn = attack._compile(counted, f"direction/{session.criterion!r}",
                                           functools.partial(attack.direction, criterion=session.criterion),
                                           [IMAGES_SPEC, LABELS_SPEC, SEED_SPEC])
            d = np.zeros_like(x)
            usable_direction = np.ones(session.batch, bool)
            todo = session.within_budget(todo)
            if todo.size:
                out, ok = session.ledger.charge(todo, direction_fn, tf.constant(x[todo]), tf.constant(y[todo]),
                                                tf.constant(session.seed, tf.int64))
                d[todo], usable_direction[todo] = out.numpy(), ok.numpy()

            def evaluate(idx, t):
                candidates = np.clip(x[idx] + t[:, None, None, None] * d[idx], 0.0, 1.0)
                return session.verify(idx, candidates, t, norm), usable_direction[idx]
        else:
            def evaluate(idx, t):
                candidates, usable = session.candidates(idx, t)
                return session.verify(idx, candidates, t, norm), usable

        bracket_search(evaluate, todo, grid, bisection_steps, best, admit=session.within_budget)
    return best.result(repr(attack), criterion=session.criterion, labels=y, digest=session.digest(),
                       ledger=session.ledger, budget_exhausted=session.budget_exhausted, seed=session.seed)
