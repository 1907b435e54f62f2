"""What every decision-based attack stands on: a counted, batched decision oracle, per-image
random streams, and the `MinimizationAttack` plumbing.

The algorithms of this subpackage are plain functions over numpy arrays and a
`DecisionOracle`:

    oracle = DecisionOracle(classify, labels, criterion, max_batch=256)
    ok = oracle(index, candidates)     # index int [N] (which image), candidates [N, 28, 28, 1]
    oracle.queries                     # int64 [B]: candidates evaluated per image, exactly

The oracle sees only the predicted class (``classify(images) -> int [N]``), so an attack
written on it is decision-based by construction. One call may hold candidates of many images
(and many candidates per image); they are evaluated in model calls of at most ``max_batch``
images (ABS runs fastest at 64-256), and each candidate is charged to its own image.

Random numbers: image ``i`` draws from ``numpy.random.default_rng([key_i, *stream])`` with
``key_i`` derived from the call's seed and the image's content (`abs_tf.attacks.randomness`),
so an image's result depends neither on the other images of the batch nor on how the
candidates are grouped into model calls.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import tensorflow as tf

from abs_tf.attacks import randomness
from abs_tf.attacks.base import MinimizationAttack
from abs_tf.attacks.counting import IMAGES_SPEC, DecisionModel
from abs_tf.attacks.criteria import MISCLASSIFICATION, check_criterion

DEFAULT_MAX_BATCH = 256
IMAGE_SHAPE = (28, 28, 1)
NUM_PIXELS = 784


class DecisionOracle:
    """Counted, batched ``is_adversarial`` for candidates of several images.

    Args:
      classify: images float32 [N, 28, 28, 1] in [0, 1] (numpy or tensor) -> predicted
        classes int [N] (tensor or numpy).
      labels: int [B], the criterion's class per image (true class, or target if targeted).
      criterion: a `abs_tf.attacks.criteria.Criterion` (its ``decide(classes, labels)`` is used).
      max_batch: most images per model call.
      max_queries: optional budget per image (candidates): one number for every image, or
        int [B], one per image (what a caller's query budget leaves each image). `remaining`
        reports what is left; the oracle refuses (ValueError) a call that would exceed it:
        algorithms size their calls with `remaining`.
    """

    def __init__(self, classify, labels, criterion=MISCLASSIFICATION, *, max_batch: int = DEFAULT_MAX_BATCH,
                 max_queries=None):
        if max_batch < 1:
            raise ValueError(f"max_batch must be >= 1, got {max_batch}")
        self.classify = classify
        self.labels = np.asarray(labels, np.int64).reshape(-1)
        self.criterion = check_criterion(criterion)
        self.max_batch = int(max_batch)
        self.max_queries = None
        if max_queries is not None:
            budget = np.floor(np.asarray(max_queries, np.float64))
            if np.any(~np.isfinite(budget)) or np.any(budget < 0) or budget.ndim > 1 or \
                    (budget.ndim == 1 and budget.size != self.labels.size):
                raise ValueError(f"max_queries must be a number >= 0 or one per image ({self.labels.size}), "
                                 f"got {max_queries!r}")
            self.max_queries = np.broadcast_to(budget.astype(np.int64), self.labels.shape).copy()
        self.queries = np.zeros(self.labels.size, np.int64)
        self.calls = 0  # model calls made (each of at most max_batch images)

    def remaining(self, index) -> np.ndarray:
        """int64 [n]: candidates each image of ``index`` may still have evaluated."""
        index = np.asarray(index, np.int64)
        if self.max_queries is None:
            return np.full(index.shape, np.iinfo(np.int64).max // 4, np.int64)
        return np.maximum(self.max_queries[index] - self.queries[index], 0)

    def still_active(self, active, need: int = 1) -> np.ndarray:
        """Indices of the images marked in ``active`` (bool [B]) that can pay ``need`` more
        queries; the others are cleared from ``active`` (in place)."""
        idx = np.flatnonzero(active)
        if self.max_queries is not None:
            active[idx[self.remaining(idx) < need]] = False
            idx = np.flatnonzero(active)
        return idx

    def affordable(self, index) -> np.ndarray:
        """bool [n]: for rows of images ``index``, keep per image only as many rows (in order)
        as its budget allows."""
        index = np.asarray(index, np.int64)
        if self.max_queries is None or index.size == 0:
            return np.ones(index.size, bool)
        order = np.argsort(index, kind="stable")
        sorted_index = index[order]
        rank = np.empty(index.size, np.int64)
        rank[order] = np.arange(index.size) - np.searchsorted(sorted_index, sorted_index, side="left")
        return rank < self.remaining(index)

    def __call__(self, index, candidates) -> np.ndarray:
        """bool [N]: whether candidate n (of image ``index[n]``) is adversarial."""
        index = np.asarray(index, np.int64).reshape(-1)
        candidates = np.asarray(candidates, np.float32).reshape((-1,) + IMAGE_SHAPE)
        if candidates.shape[0] != index.size:
            raise ValueError(f"{candidates.shape[0]} candidates for {index.size} image indices")
        if index.size == 0:
            return np.zeros(0, bool)
        counts = np.bincount(index, minlength=self.labels.size)
        if self.max_queries is not None and np.any(self.queries + counts > self.max_queries):
            raise ValueError("decision oracle: a call would exceed the per-image query budget")
        out = np.empty(index.size, bool)
        for start in range(0, index.size, self.max_batch):
            stop = min(start + self.max_batch, index.size)
            classes = self.classify(tf.constant(candidates[start:stop]))
            decided = self.criterion.decide(classes, tf.constant(self.labels[index[start:stop]]))
            out[start:stop] = np.asarray(decided, bool)
            self.calls += 1
        self.queries += counts
        return out


def image_keys(images, seed: int) -> np.ndarray:
    """uint32 [B]: each image's random key from ``seed`` and its content (see module doc)."""
    return np.asarray(randomness.image_keys(tf.constant(np.asarray(images, np.float32)), int(seed)), np.uint32)


def rng(key, *stream) -> np.random.Generator:
    """The generator of one image's stream ``stream`` (ints); see module doc."""
    return np.random.default_rng([int(key), *(int(s) for s in stream)])


def flat(images) -> np.ndarray:
    """float32 [B, 784] copy of images [B, 28, 28, 1]."""
    return np.array(images, np.float32).reshape(-1, NUM_PIXELS)


def unflat(x) -> np.ndarray:
    return np.asarray(x, np.float32).reshape((-1,) + IMAGE_SHAPE)


@dataclasses.dataclass(frozen=True)
class DecisionResult:
    """Output of a decision-based algorithm (numpy; not yet verified).

    candidates: float32 [B, 28, 28, 1] in [0, 1]; the original image where none was found.
    found: bool [B], adversarial according to the oracle.
    queries: int64 [B], candidates evaluated per image by this algorithm.
    """

    candidates: np.ndarray
    found: np.ndarray
    queries: np.ndarray


def _classes(model, images):
    """Predicted classes int64 [N] of a `DecisionModel` or any logits model."""
    if isinstance(model, DecisionModel):
        return model(images)
    return tf.argmax(model(images), axis=-1)


def classifier(model, attack=None):
    """``images -> classes`` for ``model``, compiled once per (attack, model) when the attack
    caches compiled functions (`Attack._compile`)."""
    if attack is None:
        return tf.function(lambda images: _classes(model, images), input_signature=[IMAGES_SPEC])
    return attack._compile(model, "decision/classes", _classes, [IMAGES_SPEC])


class DecisionAttack(MinimizationAttack):
    """A `MinimizationAttack` whose algorithm runs on a `DecisionOracle` (numpy, Python loop).

    Subclasses implement ``algorithm(oracle, images, keys, starting_points) -> DecisionResult``
    with images float32 [B, 28, 28, 1] numpy, keys uint32 [B] (see `image_keys`) and
    starting_points numpy or None. The base class verifies what it returns.
    """

    compile_run = False
    decision_only = True
    accepts_starting_points = True

    def algorithm(self, oracle, images, keys, starting_points):
        raise NotImplementedError

    def oracle(self, model, labels, criterion, budget=None) -> DecisionOracle:
        """The oracle of one call: the attack's ``max_batch`` and the smaller of the attack's
        ``max_queries`` (if it has one) and ``budget`` (int [B] or None, the caller's)."""
        limit = getattr(self, "max_queries", None)
        if budget is not None:
            budget = np.asarray(budget, np.float64)
            limit = budget if limit is None else np.minimum(budget, limit)
        return DecisionOracle(classifier(model, self), labels, criterion, max_batch=self.max_batch,
                              max_queries=limit)

    def run_counted(self, model, images, labels, seed=0, criterion=MISCLASSIFICATION, starting_points=None,
                    budget=None):
        """(raw candidates [B, 28, 28, 1] numpy, queries int64 [B]: candidates the oracle
        evaluated per image, exactly). ``budget``: optional per-image limit on those queries
        (the session passes what its ``max_queries`` leaves each image)."""
        x = np.asarray(images, np.float32)
        oracle = self.oracle(model, np.asarray(labels), criterion, budget)
        start = None if starting_points is None else np.asarray(starting_points, np.float32)
        result = self.algorithm(oracle, x, image_keys(x, int(seed)), start)
        return result.candidates, oracle.queries.copy()

    def run(self, model, images, labels, seed=0, criterion=MISCLASSIFICATION, starting_points=None):
        """Raw candidates [B, 28, 28, 1] (numpy); see `MinimizationAttack.run`."""
        return self.run_counted(model, images, labels, seed, criterion, starting_points)[0]


def check_positive(**values):
    """Raises ValueError naming the first value that is not > 0."""
    for name, value in values.items():
        if not value > 0:
            raise ValueError(f"{name} must be > 0, got {value!r}")
