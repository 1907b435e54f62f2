"""Salt-and-pepper noise (L0), as in foolbox 1.3's SaltAndPepperNoiseAttack (the paper's).

Per image, ``repetitions`` passes; a pass tries noise fractions p = max_p * j / steps for
j = 1 .. steps: each pixel independently becomes 1 with probability p/2 ("salt") and 0 with
probability p/2 ("pepper"). A candidate that does not change fewer pixels than the best
adversarial so far is skipped (not queried). The pass ends at the first adversarial; then
max_p = min(1, 1.2 p) (the next pass searches finer below it: the number of changed pixels is
not strictly monotone in p) and the best adversarial (fewest changed pixels) is kept.

Batching: each model call holds up to ``lookahead`` consecutive fractions of every image
still searching (the ones after an image's first adversarial in that window are wasted, but
counted); the result does not depend on ``lookahead`` or on the other images (the noise of
image i, pass r, fraction j comes from its own stream (i, r, j)).
"""

from __future__ import annotations

import numpy as np

from abs_tf.attacks.decision.oracle import (DEFAULT_MAX_BATCH, DecisionAttack, DecisionResult, check_positive, flat,
                                            rng, unflat)
from abs_tf.attacks.verify import L0_TOLERANCE

_STREAM = 21


def salt_and_pepper_noise(x, key, repetition: int, j: int, p: float) -> np.ndarray:
    """float32 [784]: image x [784] with salt-and-pepper noise of fraction p (stream (repetition, j))."""
    u = rng(key, _STREAM, repetition, j).random(x.size)
    out = x.copy()
    out[u < p / 2] = 0.0
    out[u >= 1.0 - p / 2] = 1.0
    return out


def salt_and_pepper(oracle, images, keys, *, steps: int = 100, repetitions: int = 10, lookahead: int = 8,
                    l0_tolerance: float = L0_TOLERANCE) -> DecisionResult:
    """The algorithm of the module doc on a `DecisionOracle`.

    Args:
      images: float32 [B, 28, 28, 1] in [0, 1]; keys: uint32 [B] (per-image streams).
      steps: fractions per pass; repetitions: passes; lookahead: fractions per image per call.
    Returns: `DecisionResult` (candidates with the fewest changed pixels found).
    """
    check_positive(steps=steps, repetitions=repetitions, lookahead=lookahead)
    x = flat(images)
    b = x.shape[0]
    best = x.copy()
    best_l0 = np.full(b, np.inf)
    rep = np.zeros(b, np.int64)
    step = np.ones(b, np.int64)
    max_p = np.ones(b)
    start = oracle.queries.copy()
    while True:
        searching = rep < repetitions
        active = oracle.still_active(searching)
        rep[~searching] = repetitions
        if active.size == 0:
            break
        window = np.minimum(lookahead, oracle.remaining(active))
        rows, cands, fractions, positions = [], [], [], []
        for i, w in zip(active, window):
            for j in range(step[i], min(step[i] + w, steps + 1)):
                p = max_p[i] * j / steps
                c = salt_and_pepper_noise(x[i], keys[i], rep[i], j, p)
                if np.sum(np.abs(c - x[i]) > l0_tolerance) >= best_l0[i]:
                    continue
                rows.append(i), cands.append(c), fractions.append(p), positions.append(j)
        ok = oracle(np.asarray(rows, np.int64), np.asarray(cands, np.float32).reshape(-1, 784))
        done = set()
        for n, i in enumerate(rows):
            if ok[n] and i not in done:
                done.add(i)
                best[i] = cands[n]
                best_l0[i] = np.sum(np.abs(cands[n] - x[i]) > l0_tolerance)
                max_p[i] = min(1.0, 1.2 * fractions[n])
        for i, w in zip(active, window):
            if i in done:
                rep[i] += 1
                step[i] = 1
            else:
                step[i] += w
                if step[i] > steps:
                    rep[i] += 1
                    step[i] = 1
    found = np.isfinite(best_l0)
    return DecisionResult(candidates=unflat(best), found=found, queries=oracle.queries - start)


class SaltAndPepper(DecisionAttack):
    """Salt-and-pepper noise attack (L0; module doc).

    Args: steps (fractions per pass, 100), repetitions (passes, 10), lookahead (fractions per
    image per model call, 8), max_batch (images per model call, 256), max_queries (optional
    per-image budget of queries). Queries per image: <= steps x repetitions.
    """

    norm = "l0"
    accepts_starting_points = False

    def __init__(self, *, steps: int = 100, repetitions: int = 10, lookahead: int = 8,
                 max_batch: int = DEFAULT_MAX_BATCH, max_queries=None):
        check_positive(steps=steps, repetitions=repetitions, lookahead=lookahead, max_batch=max_batch)
        self._store(steps=int(steps), repetitions=int(repetitions), lookahead=int(lookahead),
                    max_batch=int(max_batch), max_queries=max_queries)

    def algorithm(self, oracle, images, keys, starting_points):
        return salt_and_pepper(oracle, images, keys, steps=self.steps, repetitions=self.repetitions,
                               lookahead=self.lookahead)
