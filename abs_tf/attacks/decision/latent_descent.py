"""Latent Descent (Schott et al. 2019, ABS-specific; the original release's ``LineSearchAttack``).

ABS explains an image by one reconstruction per class. The attack walks from the image x
toward the reconstruction of the most likely wrong class (the target class for a targeted
criterion), recomputed at every step:

    x_0 = x;   x_k = (1 - t_k) x + t_k G_k,   t_k = k / (coarse_steps - 1),

where G_k is the reconstruction of the best other class found by ABS's latent search on
x_{k-1}. The first adversarial x_k is then refined by ``binary_search_steps`` halvings on the
segment from x to it (the release: 51 coarse steps on [0, 1], then a binary search).

Binary ABS sees only the binarization of its input, and the *binary projection* of an image a
onto x (`binary_projection`: pixels on the same side of 0.5 in both take x's value, the others
are moved just across the threshold, to 0.5 or 0.49999) is the L2-closest image to x with a's
binarization. Two variants (``binary_mode``):

* "final" (default): walk toward the plain reconstructions as above, then replace the result
  by its binary projection onto x: the same decision, the smallest L2 for it.
* "release" (the release's ``BinaryLineSearchAttack``): G_k is binary-projected onto x_{k-1}
  before each step. Its changed pixels then sit exactly at the threshold, so the blend
  (1 - t) x + t G_k crosses it for no pixel before t = 1: the walk degenerates into one jump
  to the binarized reconstruction of the previous point (on ``binary_abs``, test images 0-3,
  51 coarse steps: 1 of 4 broken, against 3 of 4 with "final").

It reads reconstructions, so it runs on models with ABS's ``search(images)`` (dict with
``losses`` [B, 10] and ``reconstructions`` [B, 28, 28, 10]; class logits are
``-losses * model.scalings``): every ABS model of the registry. Each image searched counts one
query (the base class's counting wrapper counts ``search`` as forward queries). All images
still walking share each search call, in chunks of ``max_batch``.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from abs_tf.attacks.base import MinimizationAttack
from abs_tf.attacks.criteria import MISCLASSIFICATION, check_criterion
from abs_tf.attacks.decision.noise import LineSearchResult
from abs_tf.attacks.decision.oracle import DEFAULT_MAX_BATCH, check_positive, flat, unflat
from abs_tf.models.preprocessing import BINARIZE_THRESHOLD

BELOW_THRESHOLD = 0.49999  # the release's value just below the binarization threshold
BINARY_MODES = ("final", "release")


class SearchOracle:
    """Counted, batched ABS search: ``oracle(index [N], images [N, 784]) -> (adversarial bool
    [N], reconstruction of the target class float32 [N, 784])``; ``queries`` int64 [B].

    Args:
      search: images float32 [N, 28, 28, 1] -> dict with ``losses`` [N, 10] and
        ``reconstructions`` [N, 28, 28, 10] (ABS's ``search``).
      scalings: float [10], logits = -losses * scalings (Binary ABS's per-class scalings).
      labels: int [B]; criterion: a `Criterion` (targeted: walk toward the label's class).
      max_batch: most images per search call.
    """

    def __init__(self, search, scalings, labels, criterion=MISCLASSIFICATION, *, max_batch: int = DEFAULT_MAX_BATCH):
        check_positive(max_batch=max_batch)
        self.search = search
        self.scalings = np.asarray(scalings, np.float32).reshape(-1)
        self.labels = np.asarray(labels, np.int64).reshape(-1)
        self.criterion = check_criterion(criterion)
        self.max_batch = int(max_batch)
        self.queries = np.zeros(self.labels.size, np.int64)
        self.calls = 0

    def __call__(self, index, images):
        index = np.asarray(index, np.int64).reshape(-1)
        images = np.asarray(images, np.float32).reshape(-1, 784)
        ok = np.zeros(index.size, bool)
        target_rec = np.zeros((index.size, 784), np.float32)
        for start in range(0, index.size, self.max_batch):
            stop = min(start + self.max_batch, index.size)
            out = self.search(tf.constant(images[start:stop].reshape(-1, 28, 28, 1)))
            logits = -np.asarray(out["losses"], np.float32) * self.scalings
            labels = self.labels[index[start:stop]]
            ok[start:stop] = np.asarray(self.criterion.decide(tf.constant(np.argmax(logits, -1)), tf.constant(labels)))
            if self.criterion.targeted:
                target = labels
            else:
                logits[np.arange(labels.size), labels] = -np.inf
                target = np.argmax(logits, -1)
            rec = np.asarray(out["reconstructions"], np.float32)             # [n, 28, 28, 10]
            target_rec[start:stop] = rec[np.arange(labels.size), :, :, target].reshape(-1, 784)
            self.calls += 1
        self.queries += np.bincount(index, minlength=self.labels.size)
        return ok, target_rec


def binary_projection(reconstructions, images):
    """The release's projection for Binary ABS (module doc): float32 [N, 784] -> [N, 784]."""
    rec_on, img_on = reconstructions >= BINARIZE_THRESHOLD, images >= BINARIZE_THRESHOLD
    across = np.where(rec_on, BINARIZE_THRESHOLD, BELOW_THRESHOLD).astype(np.float32)
    return np.where(rec_on == img_on, images, across).astype(np.float32)


def latent_descent(oracle: SearchOracle, images, *, coarse_steps: int = 51, binary_search_steps: int = 10,
                   binary: bool = False, binary_mode: str = "final") -> LineSearchResult:
    """The Latent Descent algorithm (module doc).

    Args:
      oracle: a `SearchOracle` of the images. images: float32 [B, 28, 28, 1] in [0, 1].
      coarse_steps: points t_k on [0, 1] (>= 2). binary_search_steps: halvings (0: none).
      binary, binary_mode: the Binary ABS variant (module doc), "final" or "release".
    Returns: `LineSearchResult` (queries: searches per image): candidates
    ``clip(x + amplitudes * directions)`` (binary "final": their binary projection onto x)
    with directions the first adversarial coarse point minus x and amplitudes in (0, 1] the
    binary search's adversarial end (1 without it; ``amplitudes - 2^-binary_search_steps`` was
    not adversarial).
    """
    if coarse_steps < 2:
        raise ValueError(f"coarse_steps must be >= 2, got {coarse_steps}")
    if binary_search_steps < 0:
        raise ValueError(f"binary_search_steps must be >= 0, got {binary_search_steps}")
    if binary_mode not in BINARY_MODES:
        raise ValueError(f"binary_mode must be one of {BINARY_MODES}, got {binary_mode!r}")
    project_steps = binary and binary_mode == "release"
    x = flat(images)
    b = x.shape[0]
    start = oracle.queries.copy()
    adv = x.copy()
    found = np.zeros(b, bool)
    target = x.copy()
    for t in np.linspace(0.0, 1.0, coarse_steps, dtype=np.float32):
        idx = np.flatnonzero(~found)
        if idx.size == 0:
            break
        current = np.clip((1.0 - t) * x[idx] + t * target[idx], 0.0, 1.0)
        ok, rec = oracle(idx, current)
        adv[idx[ok]] = current[ok]
        found[idx[ok]] = True
        target[idx] = binary_projection(rec, current) if project_steps else rec
    lo = np.zeros(b, np.float32)
    hi = np.ones(b, np.float32)
    idx = np.flatnonzero(found & np.any(adv != x, axis=1))
    direction = adv - x
    for _ in range(binary_search_steps if idx.size else 0):
        mid = (lo[idx] + hi[idx]) / 2
        ok, _ = oracle(idx, np.clip(x[idx] + mid[:, None] * direction[idx], 0.0, 1.0))
        hi[idx[ok]] = mid[ok]
        lo[idx[~ok]] = mid[~ok]
    candidates = np.where(found[:, None], np.clip(x + hi[:, None] * direction, 0.0, 1.0), x)
    if binary and binary_mode == "final":
        candidates = binary_projection(candidates, x)
    return LineSearchResult(candidates=unflat(candidates), found=found, queries=oracle.queries - start,
                            amplitudes=np.where(found, hi, np.inf).astype(np.float32), directions=unflat(direction))


class LatentDescent(MinimizationAttack):
    """Latent Descent on ABS models (module doc), L2.

    Args:
      coarse_steps: points on [0, 1] (51, the release's). binary_search_steps: halvings (10).
      binary: None (default): the Binary ABS variant iff the model is binary (``model.binary``);
        True / False force it. binary_mode: "final" (default) or "release" (module doc).
      max_batch: images per search call (256).
    Queries per image: <= coarse_steps + binary_search_steps searches.
    """

    norm = "l2"
    compile_run = False

    def __init__(self, *, coarse_steps: int = 51, binary_search_steps: int = 10, binary=None,
                 binary_mode: str = "final", max_batch: int = DEFAULT_MAX_BATCH):
        check_positive(max_batch=max_batch)
        if coarse_steps < 2 or binary_search_steps < 0:
            raise ValueError("LatentDescent needs coarse_steps >= 2 and binary_search_steps >= 0")
        if binary_mode not in BINARY_MODES:
            raise ValueError(f"binary_mode must be one of {BINARY_MODES}, got {binary_mode!r}")
        self._store(coarse_steps=int(coarse_steps), binary_search_steps=int(binary_search_steps),
                    binary=None if binary is None else bool(binary), binary_mode=binary_mode,
                    max_batch=int(max_batch))

    def run(self, model, images, labels, seed=0, criterion=MISCLASSIFICATION, starting_points=None):
        """Raw candidates [B, 28, 28, 1] (numpy); ``model`` is the base class's counting wrapper."""
        return self.run_counted(model, images, labels, seed, criterion, starting_points)[0]

    def run_counted(self, model, images, labels, seed=0, criterion=MISCLASSIFICATION, starting_points=None,
                    budget=None):
        """(raw candidates, searches per image int64 [B], exactly). ``budget`` is not enforced
        inside a run (at most coarse_steps + binary_search_steps searches per image); the
        session checks it between runs."""
        del budget
        search = getattr(model, "search", None)
        abs_model = getattr(model, "model", model)
        if not callable(search):
            raise TypeError(f"LatentDescent needs an ABS model (a `search` method giving reconstructions), "
                            f"got {abs_model!r}")
        scalings = np.asarray(getattr(abs_model, "scalings", np.ones(10)), np.float32)
        binary = bool(getattr(abs_model, "binary", False)) if self.binary is None else self.binary
        oracle = SearchOracle(search, scalings, np.asarray(labels), criterion, max_batch=self.max_batch)
        result = latent_descent(oracle, np.asarray(images, np.float32), coarse_steps=self.coarse_steps,
                                binary_search_steps=self.binary_search_steps, binary=binary,
                                binary_mode=self.binary_mode)
        return result.candidates, oracle.queries.copy()
