"""The Boundary attack (Brendel, Rauber & Bethge, ICLR 2018, https://arxiv.org/abs/1712.04248), L2.

From an adversarial start (blended uniform noise by default, or given starting points: e.g.
training images of another class), each step draws per image ``directions`` proposals around
its current adversarial x_adv at distance r = ||x_adv - x|| from the original x:

1. orthogonal step: a Gaussian direction made orthogonal to x - x_adv, of length
   ``spherical_step * r``, then projected back onto the sphere of radius r around x;
2. step toward the original: ``source_step * r`` along the line to x.

A proposal that is adversarial and closer replaces x_adv (the closest of an image's
proposals). Every ``update_stats_every`` steps the orthogonal-only candidates are queried too,
and both step sizes adapt to the success rates, as in foolbox 3's implementation: spherical
success over the last ``spherical_history`` checks > 0.5 (< 0.2) multiplies (divides) both
steps by ``step_adaptation``; full-step success over the last ``step_history`` checks > 0.25
(< 0.1) does so for the source step. An image stops when its source step falls below
``convergence``, after ``steps`` steps, or when its query budget cannot pay for another step.

Defaults differ from foolbox 3's (statistics every 10 steps over the last 100 / 30 checks): on
the linear known-answer problem (`abs_tf.attacks.linear.linear_problem`, 6 images, blended-noise
start at 8-21x the minimal L2) those adapt too slowly and end at 1.4-2.0x the minimum after
5000 steps, while statistics every step over the last 30 / 10 checks end at 1.10-1.12x after
5000 steps (10 000 queries) and 1.02x after 10 000. More ``directions`` per step cost more
queries per unit of progress but fewer model calls (5 directions, 2000 steps: 1.05x).

Batched over images: one model call per step holds every active image's proposals (and
orthogonal candidates on statistics steps).
"""

from __future__ import annotations

import numpy as np

from abs_tf.attacks.decision.noise import blended_noise
from abs_tf.attacks.decision.oracle import (DEFAULT_MAX_BATCH, DecisionAttack, DecisionResult, check_positive, flat,
                                            rng, unflat)

_STREAM = 41


class _History:
    """Per image, the last ``length`` boolean outcomes (a ring buffer)."""

    def __init__(self, batch: int, length: int):
        self.values = np.zeros((batch, length), bool)
        self.count = np.zeros(batch, np.int64)
        self.pos = np.zeros(batch, np.int64)
        self.length = length

    def append(self, idx, outcomes):
        """outcomes bool [len(idx), d]."""
        for column in np.asarray(outcomes, bool).T:
            self.values[idx, self.pos[idx]] = column
            self.pos[idx] = (self.pos[idx] + 1) % self.length
            self.count[idx] = np.minimum(self.count[idx] + 1, self.length)

    def full_rate(self, idx):
        """(full bool [n], success rate float [n])."""
        return self.count[idx] == self.length, self.values[idx].mean(axis=1)

    def clear(self, idx):
        self.count[idx] = 0
        self.pos[idx] = 0


def proposals(x, adv, spherical_steps, source_steps, eta):
    """Boundary-attack proposals (foolbox 3's ``draw_proposals``), vectorised.

    Args: x, adv float32 [n, 784] (originals, current adversarials, adv != x); step sizes
    [n]; eta [n, d, 784] Gaussian draws.
    Returns: (candidates, spherical candidates), both float32 [n, d, 784] in [0, 1].
    """
    source = x - adv                                                     # [n, 784]
    r = np.linalg.norm(source, axis=1)                                   # [n]
    unit = source / r[:, None]
    eta = eta - np.einsum("ndk,nk->nd", eta, unit)[..., None] * unit[:, None]
    eta *= (spherical_steps * r)[:, None, None] / np.linalg.norm(eta, axis=2, keepdims=True)
    spherical = x[:, None] + (eta - source[:, None]) / np.sqrt(spherical_steps ** 2 + 1)[:, None, None]
    spherical = np.clip(spherical, 0.0, 1.0)
    toward = x[:, None] - spherical
    toward_norm = np.linalg.norm(toward, axis=2)                         # [n, d]
    # Step length source_step * r, corrected for the clipped candidate's deviation from the sphere.
    length = np.maximum((source_steps * r)[:, None] + toward_norm - r[:, None], 0.0) / np.maximum(toward_norm, 1e-12)
    candidates = np.clip(spherical + length[..., None] * toward, 0.0, 1.0)
    return candidates.astype(np.float32), spherical.astype(np.float32)


def boundary(oracle, images, starting_points, keys, *, found=None, steps: int = 5000, spherical_step: float = 1e-2,
             source_step: float = 1e-2, step_adaptation: float = 1.5, directions: int = 1,
             update_stats_every: int = 1, spherical_history: int = 30, step_history: int = 10,
             convergence: float = 1e-7) -> DecisionResult:
    """The Boundary attack (module doc) on a `DecisionOracle`.

    Args:
      images, starting_points: float32 [B, 28, 28, 1]; starts adversarial where ``found``
        (bool [B], default all). keys: uint32 [B]. Other arguments: module doc.
    Returns: `DecisionResult` (the closest adversarial per image; queries of this algorithm).
    """
    check_positive(steps=steps, spherical_step=spherical_step, source_step=source_step, directions=directions,
                   update_stats_every=update_stats_every, spherical_history=spherical_history,
                   step_history=step_history)
    if step_adaptation <= 1:
        raise ValueError(f"step_adaptation must be > 1, got {step_adaptation}")
    x = flat(images)
    b = x.shape[0]
    found = np.ones(b, bool) if found is None else np.asarray(found, bool)
    best = np.where(found[:, None], flat(starting_points), x)
    dist = np.linalg.norm(best - x, axis=1)
    generators = [rng(key, _STREAM) for key in keys]
    sph = np.full(b, float(spherical_step))
    src = np.full(b, float(source_step))
    hist_s, hist_t = _History(b, spherical_history), _History(b, step_history)
    active = found & (dist > 0)
    start = oracle.queries.copy()
    for step in range(1, steps + 1):
        check = step % update_stats_every == 0
        need = directions * (2 if check else 1)
        active &= src >= convergence
        idx = oracle.still_active(active, need)
        if idx.size == 0:
            break
        n = idx.size
        eta = np.stack([generators[i].standard_normal((directions, x.shape[1])) for i in idx])
        cand, sph_cand = proposals(x[idx], best[idx], sph[idx], src[idx], eta)
        rows = np.repeat(idx, directions)
        if check:
            ok_all = oracle(np.concatenate([rows, rows]), np.concatenate([cand.reshape(-1, 784), sph_cand.reshape(-1, 784)]))
            ok, ok_s = ok_all[:rows.size].reshape(n, directions), ok_all[rows.size:].reshape(n, directions)
        else:
            ok = oracle(rows, cand.reshape(-1, 784)).reshape(n, directions)
        d = np.linalg.norm(cand - x[idx][:, None], axis=2)
        score = np.where(ok & (d < dist[idx][:, None]), d, np.inf)
        j = np.argmin(score, axis=1)
        better = np.isfinite(score[np.arange(n), j])
        best[idx[better]] = cand[np.flatnonzero(better), j[better]]
        dist[idx[better]] = score[np.flatnonzero(better), j[better]]
        if check:
            hist_s.append(idx, ok_s)
            hist_t.append(idx, ok)
            full, rate = hist_s.full_rate(idx)
            up, down = full & (rate > 0.5), full & (rate < 0.2)
            factor = np.where(up, step_adaptation, np.where(down, 1 / step_adaptation, 1.0))
            sph[idx] *= factor
            src[idx] *= factor
            hist_s.clear(idx[up | down])
            full, rate = hist_t.full_rate(idx)
            up, down = full & (rate > 0.25), full & (rate < 0.1)
            src[idx] *= np.where(up, step_adaptation, np.where(down, 1 / step_adaptation, 1.0))
            hist_t.clear(idx[up | down])
    return DecisionResult(candidates=unflat(best), found=found.copy(), queries=oracle.queries - start)


class Boundary(DecisionAttack):
    """The Boundary attack (module doc), L2.

    Args:
      steps: most steps per image (5000). max_queries: optional per-image query budget (the
        start's search included). directions: proposals per image per step (1).
      spherical_step, source_step: initial relative step sizes (1e-2 each).
      step_adaptation (1.5), update_stats_every (1), spherical_history (30),
      step_history (10), convergence (1e-7): the step-size control of the module doc.
      init_repetitions: blended-noise directions per image for the start (4), used when no
        ``starting_points`` are given.
      max_batch: images per model call (256).
    Queries per image: <= steps x directions x (1 + 1 / update_stats_every) + the start's.
    """

    norm = "l2"
    accepts_starting_points = True

    def __init__(self, *, steps: int = 5000, max_queries=None, directions: int = 1, spherical_step: float = 1e-2,
                 source_step: float = 1e-2, step_adaptation: float = 1.5, update_stats_every: int = 1,
                 spherical_history: int = 30, step_history: int = 10, convergence: float = 1e-7,
                 init_repetitions: int = 4, max_batch: int = DEFAULT_MAX_BATCH):
        check_positive(steps=steps, directions=directions, init_repetitions=init_repetitions, max_batch=max_batch)
        self._store(steps=int(steps), max_queries=max_queries, directions=int(directions),
                    spherical_step=float(spherical_step), source_step=float(source_step),
                    step_adaptation=float(step_adaptation), update_stats_every=int(update_stats_every),
                    spherical_history=int(spherical_history), step_history=int(step_history),
                    convergence=float(convergence), init_repetitions=int(init_repetitions), max_batch=int(max_batch))

    def algorithm(self, oracle, images, keys, starting_points):
        start, found = oracle.queries.copy(), None
        if starting_points is None:
            init = blended_noise(oracle, images, keys, repetitions=self.init_repetitions)
            starting_points, found = init.candidates, init.found
        result = boundary(oracle, images, starting_points, keys, found=found, steps=self.steps,
                          spherical_step=self.spherical_step, source_step=self.source_step,
                          step_adaptation=self.step_adaptation, directions=self.directions,
                          update_stats_every=self.update_stats_every, spherical_history=self.spherical_history,
                          step_history=self.step_history, convergence=self.convergence)
        return DecisionResult(result.candidates, result.found, oracle.queries - start)
