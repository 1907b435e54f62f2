"""The Pointwise attack (Schott et al. 2019, the paper's new L0 attack; foolbox's PointwiseAttack).

From an adversarial start (salt-and-pepper noise by default, or any given adversarial):

1. **Reset**: visit the perturbed pixels in a random order and set each back to its original
   value whenever the image stays adversarial; repeat with a fresh order while a full pass
   changes something (``max_passes`` caps the passes).
2. **Binary search**: per remaining perturbed pixel (random order), ``binary_search_steps``
   halvings between the original value (not adversarial) and the current one (adversarial)
   keep the value closest to the original that stays adversarial. L0 stays, L2 shrinks.

Batching: step 1 evaluates, per image and model call, the next k single-pixel resets of its
order from the current image; the first that stays adversarial is applied and the order
continues after it (the resets after it were evaluated but are discarded: counted, wasted).
The result is therefore exactly that of the one-at-a-time algorithm, whatever k, and k
adapts to the image's success rate in the pass (k ~ 1 / rate, at most its share of
``max_batch``; ``candidates_per_image`` fixes it). Step 2 evaluates one value per image per
call (its halvings are sequential), or ``search_points`` values of the pixel per call (a
(k + 1)-ary search: fewer calls, more queries). All images share each model call.
"""

from __future__ import annotations

import numpy as np

from abs_tf.attacks.decision.oracle import (DEFAULT_MAX_BATCH, DecisionAttack, DecisionResult, check_positive, flat,
                                            rng, unflat)
from abs_tf.attacks.decision.salt_and_pepper import SaltAndPepper

_RESET_STREAM, _SEARCH_STREAM, _RESTART_STREAM = 31, 32, 33


class _ResetState:
    """Per image: the pixel order of the current pass and where it stands."""

    def __init__(self, x, adv, keys, max_passes):
        self.x, self.adv, self.keys, self.max_passes = x, adv, keys, max_passes
        b = x.shape[0]
        self.order = [np.zeros(0, np.int64)] * b
        self.ptr = np.zeros(b, np.int64)
        self.passes = np.zeros(b, np.int64)
        self.changed = np.zeros(b, bool)
        self.tested = np.zeros(b, np.int64)
        self.succeeded = np.zeros(b, np.int64)

    def new_pass(self, i) -> bool:
        """Starts image i's next pass; False when it has no perturbed pixel or passes are used up."""
        if self.max_passes is not None and self.passes[i] >= self.max_passes:
            return False
        pixels = np.flatnonzero(self.adv[i] != self.x[i])
        self.order[i] = rng(self.keys[i], _RESET_STREAM, self.passes[i]).permutation(pixels)
        self.passes[i] += 1
        self.ptr[i], self.changed[i], self.tested[i], self.succeeded[i] = 0, False, 0, 0
        return pixels.size > 0

    def next_k(self, i, cap, fixed) -> int:
        # about 1 / success rate: one reset per call while most succeed, more as they start failing
        k = fixed if fixed else min(max(1, round((self.tested[i] + 1) / (self.succeeded[i] + 1))), cap)
        return int(min(k, self.order[i].size - self.ptr[i]))


def _reset_phase(oracle, x, adv, keys, todo, max_passes, candidates_per_image):
    state = _ResetState(x, adv, keys, max_passes)
    active = np.zeros(x.shape[0], bool)
    for i in todo:
        active[i] = state.new_pass(i)
    while True:
        idx = oracle.still_active(active)
        if idx.size == 0:
            return
        cap = max(1, oracle.max_batch // idx.size)
        ks = np.minimum([state.next_k(i, cap, candidates_per_image) for i in idx], oracle.remaining(idx))
        rows = np.repeat(idx, ks)
        pixels = np.concatenate([state.order[i][state.ptr[i]:state.ptr[i] + k] for i, k in zip(idx, ks)])
        candidates = adv[rows]
        candidates[np.arange(rows.size), pixels] = x[rows, pixels]
        ok = oracle(rows, candidates)
        offset = 0
        for i, k in zip(idx, ks):
            hits = np.flatnonzero(ok[offset:offset + k])
            used = hits[0] + 1 if hits.size else k
            if hits.size:
                pixel = pixels[offset + hits[0]]
                adv[i, pixel] = x[i, pixel]
                state.changed[i] = True
                state.succeeded[i] += 1
            state.tested[i] += used
            state.ptr[i] += used
            offset += k
            if state.ptr[i] >= state.order[i].size:
                active[i] = state.changed[i] and state.new_pass(i)


def _search_phase(oracle, x, adv, keys, todo, steps, points):
    """Per remaining pixel, ``points`` values per call between the original value (lo, not
    adversarial) and the current one (hi, adversarial): the closest adversarial one becomes hi,
    its neighbour toward lo the new lo. ``rounds`` calls per pixel give at least the precision
    of ``steps`` halvings (points = 1: binary search)."""
    rounds = int(np.ceil(steps / np.log2(points + 1) - 1e-9))
    order = [rng(keys[i], _SEARCH_STREAM).permutation(np.flatnonzero(adv[i] != x[i])) for i in range(x.shape[0])]
    pos = np.zeros(x.shape[0], np.int64)
    done_rounds = np.zeros(x.shape[0], np.int64)
    lo = np.zeros(x.shape[0], np.float32)
    hi = np.zeros(x.shape[0], np.float32)
    active = np.zeros(x.shape[0], bool)
    active[todo] = [order[i].size > 0 for i in todo]
    fractions = (np.arange(1, points + 1) / (points + 1)).astype(np.float32)          # [k]
    while True:
        idx = oracle.still_active(active, points)
        if idx.size == 0:
            return
        pixels = np.array([order[i][pos[i]] for i in idx], np.int64)
        fresh = done_rounds[idx] == 0
        lo[idx[fresh]] = x[idx[fresh], pixels[fresh]]
        hi[idx[fresh]] = adv[idx[fresh], pixels[fresh]]
        values = (lo[idx, None] + (hi[idx] - lo[idx])[:, None] * fractions).astype(np.float32)   # [n, k]
        rows = np.repeat(idx, points)
        candidates = adv[rows]
        candidates[np.arange(rows.size), np.repeat(pixels, points)] = values.reshape(-1)
        ok = oracle(rows, candidates).reshape(idx.size, points)
        first = np.where(ok.any(axis=1), np.argmax(ok, axis=1), points)                 # k: none adversarial
        hit = first < points
        below = np.where(first > 0, values[np.arange(idx.size), np.maximum(first - 1, 0)], lo[idx])
        lo[idx] = np.where(hit, below, values[:, -1])
        hi[idx[hit]] = values[np.flatnonzero(hit), first[hit]]
        adv[idx[hit], pixels[hit]] = hi[idx[hit]]
        done_rounds[idx] += 1
        finished = idx[done_rounds[idx] >= rounds]
        done_rounds[finished] = 0
        pos[finished] += 1
        active[finished] = pos[finished] < np.array([order[i].size for i in finished], np.int64)


def pointwise(oracle, images, starting_points, keys, *, found=None, binary_search_steps: int = 10,
              max_passes=None, candidates_per_image=None, search_points: int = 1) -> DecisionResult:
    """The Pointwise algorithm (module doc) on a `DecisionOracle`.

    Args:
      images, starting_points: float32 [B, 28, 28, 1] in [0, 1]; the starts adversarial where
        ``found`` (bool [B], default all) is True; other images are left alone.
      keys: uint32 [B] per-image streams. binary_search_steps: halvings per pixel (0: none).
      max_passes: cap on the reset passes (None: until a pass changes nothing).
      candidates_per_image: fixed resets per image per call (None: adaptive).
      search_points: values per pixel per call in step 2 (1: binary search; k: the bracket
        shrinks (k + 1)-fold per call, ceil(binary_search_steps / log2(k + 1)) calls per pixel).
    Returns: `DecisionResult`; queries of this algorithm only.
    """
    if binary_search_steps < 0:
        raise ValueError(f"binary_search_steps must be >= 0, got {binary_search_steps}")
    if max_passes is not None:
        check_positive(max_passes=max_passes)
    if candidates_per_image is not None:
        check_positive(candidates_per_image=candidates_per_image)
    check_positive(search_points=search_points)
    x = flat(images)
    found = np.ones(x.shape[0], bool) if found is None else np.asarray(found, bool)
    adv = np.where(found[:, None], flat(starting_points), x)
    start = oracle.queries.copy()
    todo = np.flatnonzero(found)
    _reset_phase(oracle, x, adv, keys, todo, max_passes, candidates_per_image)
    if binary_search_steps:
        _search_phase(oracle, x, adv, keys, todo, binary_search_steps, int(search_points))
    return DecisionResult(candidates=unflat(adv), found=found.copy(), queries=oracle.queries - start)


class Pointwise(DecisionAttack):
    """The Pointwise attack (module doc); minimises L0 (``norm="l2"`` to rank it in L2).

    Args:
      norm: "l0" (default) or "l2": the distance its results are compared in.
      binary_search_steps: halvings per remaining pixel (10; 0 skips step 2).
      max_passes: cap on the reset passes (None: until nothing changes).
      candidates_per_image: resets per image per call (None: adaptive, see module doc).
      search_points: values per pixel per call in step 2 (1: binary search; more fill ABS's
        batches at the cost of more queries, see `pointwise`).
      init_attack: decision attack for the start when no ``starting_points`` are given
        (default ``SaltAndPepper(repetitions=3)``; an `AdditiveGaussianNoise` works too).
      restarts: independent runs (new start and pixel orders each; the first is the single
        run's, so ``restarts=1`` is the paper's attack); per image the best result is kept
        (fewest changed pixels, then smallest L2; in L2 mode smallest L2). The result depends
        strongly on the random start and order: on the shipped CNN (first 20 test images) one
        run's median L0 was 15-19.5 over 5 seeds, the best of 5 runs 12.5.
      max_batch: images per model call (256). max_queries: optional per-image budget
        (the starts' queries included, all restarts together).
    """

    accepts_starting_points = True

    def __init__(self, *, norm: str = "l0", binary_search_steps: int = 10, max_passes=None,
                 candidates_per_image=None, search_points: int = 1, init_attack=None,
                 restarts: int = 1, max_batch: int = DEFAULT_MAX_BATCH, max_queries=None):
        if norm not in ("l0", "l2"):
            raise ValueError(f"Pointwise norm must be 'l0' or 'l2', got {norm!r}")
        if init_attack is None:
            init_attack = SaltAndPepper(repetitions=3)
        if not isinstance(init_attack, DecisionAttack) or init_attack.accepts_starting_points:
            raise TypeError(f"init_attack must be a decision attack that needs no start, got {init_attack!r}")
        check_positive(max_batch=max_batch, restarts=restarts)
        self._store(norm=norm, binary_search_steps=int(binary_search_steps), max_passes=max_passes,
                    candidates_per_image=candidates_per_image, search_points=int(search_points),
                    init_attack=init_attack, restarts=int(restarts), max_batch=int(max_batch),
                    max_queries=max_queries)

    def algorithm(self, oracle, images, keys, starting_points):
        start = oracle.queries.copy()
        best = None
        for restart in range(self.restarts):
            run_keys = keys if restart == 0 else restart_keys(keys, restart)
            begin, found = starting_points, None
            if begin is None:
                init = self.init_attack.algorithm(oracle, images, run_keys, None)
                begin, found = init.candidates, init.found
            result = pointwise(oracle, images, begin, run_keys, found=found,
                               binary_search_steps=self.binary_search_steps, max_passes=self.max_passes,
                               candidates_per_image=self.candidates_per_image, search_points=self.search_points)
            best = result if best is None else _better(best, result, images, self.norm)
        return DecisionResult(best.candidates, best.found, oracle.queries - start)


def restart_keys(keys, restart: int) -> np.ndarray:
    """uint32 [B]: image streams of restart ``restart`` (>= 1), derived from ``keys``."""
    return np.array([rng(k, _RESTART_STREAM, restart).integers(2 ** 32, dtype=np.uint64) for k in keys], np.uint32)


def _better(a: DecisionResult, b: DecisionResult, images, norm: str) -> DecisionResult:
    """Per image the better of two results: found beats not found; then (L0, L2) or L2."""
    x = flat(images)
    da, db = flat(a.candidates) - x, flat(b.candidates) - x
    l2a, l2b = np.linalg.norm(da, axis=1), np.linalg.norm(db, axis=1)
    if norm == "l0":
        l0a, l0b = np.count_nonzero(da, axis=1), np.count_nonzero(db, axis=1)
        b_smaller = (l0b < l0a) | ((l0b == l0a) & (l2b < l2a))
    else:
        b_smaller = l2b < l2a
    take_b = b.found & (~a.found | b_smaller)
    candidates = np.where(take_b[:, None, None, None], b.candidates, a.candidates)
    return DecisionResult(candidates, a.found | b.found, a.queries + b.queries)
