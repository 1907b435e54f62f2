"""The smallest verified adversarial per image (`MinimalResult`) and the best over attacks.

Conventions (SPEC §4 and issue "attacks that cannot overstate robustness"):

* images the model already gets wrong are adversarial at distance 0;
* images without an adversarial have distance +inf in every norm;
* images on which the attack never had a usable gradient ("attack failed (no gradient)") are
  *not robust*: they count as broken at distance 0 in `accuracy` and `median` (an attack that
  could not run shows nothing), and `no_gradient` names them;
* "within epsilon" is `verify.within`, the one threshold rule of the verifier.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from abs_tf.attacks.base import ResultFields
from abs_tf.attacks.session import images_digest
from abs_tf.attacks.criteria import MISCLASSIFICATION, check_criterion
from abs_tf.attacks.verify import NORMS, Verified, check_norm, verify, within
from abs_tf.checks import check_images, check_labels


@dataclasses.dataclass(frozen=True)
class MinimalResult(ResultFields):
    """Smallest verified adversarial per image: `ResultFields` with

    adversarials: float32 [B, 28, 28, 1] in [0, 1]; the original image where none was found.
    is_adversarial, no_gradient, budget_exhausted: bool [B]; predictions: int64 [B].
    distances: norm -> float32 [B], of the kept adversarial (kept by ``norm``); +inf where none.
    """

    @property
    def full_success(self) -> bool:
        """Every image adversarial (the unbounded-epsilon sanity check)."""
        return bool(self.is_adversarial.all())

    def effective_distances(self, norm=None) -> np.ndarray:
        """float [B]: distances with failed (no-gradient) images at 0 (see module doc)."""
        return np.where(self.no_gradient, 0.0, self.distances[norm or self.norm])

    def robust(self, epsilon: float, norm=None) -> np.ndarray:
        """bool [B]: no verified adversarial within epsilon (`verify.within`), attack not failed."""
        norm = norm or self.norm
        return ~(self.is_adversarial & within(self.distances[norm], epsilon, norm)) & ~self.no_gradient

    def accuracy(self, epsilon: float, norm=None) -> float:
        """Robust accuracy at epsilon: fraction of images `robust`."""
        return float(np.mean(self.robust(epsilon, norm)))

    def median(self, norm=None) -> float:
        """Median distance (inf counts as larger than everything; failed images as 0)."""
        return float(np.median(self.effective_distances(norm)))


class Best:
    """Keeps per image the verified adversarial with the smallest distance in `norm`."""

    def __init__(self, images: np.ndarray, norm: str, predictions=None):
        b = images.shape[0]
        self.norm = check_norm(norm)
        self.adversarials = images.copy()
        self.found = np.zeros(b, bool)
        self.predictions = np.full(b, -1, np.int64) if predictions is None else np.array(predictions, np.int64)
        self.distances = {n: np.full(b, np.inf, np.float32) for n in NORMS}
        self.no_gradient = np.zeros(b, bool)

    def update(self, idx: np.ndarray, v: Verified, usable=None) -> np.ndarray:
        """Takes the verified successes of images ``idx`` (and their usable-gradient flags);
        returns their success mask."""
        better = v.is_adversarial & (v.distances[self.norm] < self.distances[self.norm][idx])
        take = idx[better]
        self.adversarials[take] = v.adversarials[better]
        self.found[take] = True
        self.predictions[take] = v.predictions[better]
        for n in NORMS:
            self.distances[n][take] = v.distances[n][better]
        if usable is not None:
            self.no_gradient[idx] |= ~np.asarray(usable, bool)
        return v.is_adversarial

    def result(self, attack: str, *, criterion, labels, digest, ledger, budget_exhausted, seed=0) -> MinimalResult:
        return MinimalResult(
            attack=attack, norm=self.norm, criterion=repr(criterion), seed=int(seed), labels=np.asarray(labels),
            images_digest=digest, adversarials=self.adversarials, is_adversarial=self.found.copy(),
            predictions=self.predictions, distances=self.distances, no_gradient=self.no_gradient & ~self.found,
            budget_exhausted=np.asarray(budget_exhausted, bool) & ~self.found,
            forward_queries=ledger.forward.copy(), gradient_queries=ledger.gradient.copy(), queries=ledger.total())


class Counts:
    """Per-image query counts of searches that call a plain model (``Best.result``'s ledger)."""

    def __init__(self, forward, gradient, total):
        self.forward, self.gradient, self._total = forward, gradient, total

    def total(self):
        return self._total


def best_of(results, norm: str, *, model, images, labels, criterion=MISCLASSIFICATION) -> MinimalResult:
    """Per image, the smallest adversarial in ``norm`` over several `MinimalResult`s (the
    evaluation's "all attacks" number), re-verified on ``model`` in one final batch.

    Refuses (ValueError) results made on other images, labels or criterion. A kept adversarial
    that does not verify again (a result from another model; a borderline candidate whose
    class flips with the batch's float round-off) is dropped for the image's next best one.
    An image is "no gradient" if no result broke it and some attack failed on it.
    queries: per image, summed over the results, plus the final verification.
    """
    results = list(results)
    if not results:
        raise ValueError("best_of needs at least one result")
    check_norm(norm)
    criterion = check_criterion(criterion)
    x = check_images(images).numpy()
    y = check_labels(labels, x.shape[0]).numpy()
    digest = images_digest(x)
    for i, r in enumerate(results):
        problems = [name for name, same in (("images", r.images_digest == digest),
                                            ("labels", np.array_equal(np.asarray(r.labels), y)),
                                            ("criterion", r.criterion == repr(criterion))) if not same]
        if problems:
            raise ValueError(f"best_of: result {i} ({r.attack[:60]}) was made on other {', '.join(problems)}")
    b = x.shape[0]
    order = np.argsort(np.stack([np.where(r.is_adversarial, r.distances[norm], np.inf) for r in results]), axis=0,
                       kind="stable")                                                          # [R, B]
    best = Best(x, norm)
    pending = np.arange(b)
    extra = np.zeros(b)
    for rank in range(len(results)):
        choice = order[rank, pending]
        has = np.array([results[c].is_adversarial[i] for c, i in zip(choice, pending)], bool)
        pending, choice = pending[has], choice[has]
        if pending.size == 0:
            break
        candidates = np.stack([results[c].adversarials[i] for c, i in zip(choice, pending)])
        v = verify(model, x[pending], y[pending], candidates, criterion=criterion)
        extra[pending] += 1
        best.update(pending, v)
        pending = pending[~v.is_adversarial]
    best.no_gradient = np.any([r.no_gradient for r in results], axis=0)
    exhausted = np.any([r.budget_exhausted for r in results], axis=0)
    forward = sum(r.forward_queries for r in results) + extra
    gradient = sum(r.gradient_queries for r in results)
    ledger = Counts(forward, gradient, sum(r.queries for r in results) + extra)
    return best.result(" | ".join(r.attack for r in results), criterion=criterion, labels=y, digest=digest,
                       ledger=ledger, budget_exhausted=exhausted, seed=results[0].seed)
