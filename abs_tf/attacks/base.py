"""Attack base classes and the result of an attack (foolbox 3's design, TF only).

Two families:

* `FixedEpsilonAttack`: subclasses write ``run(model, images, labels, epsilon, seed, criterion)``
  with ``epsilon`` float32 [B] (one budget per image, so searches over epsilon batch well) and
  return raw candidates [B, 28, 28, 1].
* `MinimizationAttack`: subclasses write ``run(model, images, labels, seed, criterion,
  starting_points=None)`` and return raw candidates that try to be adversarial with as small a
  perturbation as possible.

Gradient attacks write ``run_with_status`` instead, returning ``(candidates, usable)`` with
``usable`` bool [B]: whether the attack ever got a usable (finite, non-zero) input gradient for
the image (see `abs_tf.attacks.losses`); their ``run`` returns the candidates only.

`Attack.__call__` is the only public entry point (with `abs_tf.attacks.minimize`). Through a
`abs_tf.attacks.session.Session` it

* checks inputs; classifies the clean images first: those the criterion already accepts
  (clean-misclassified) are adversarial at distance 0 for every epsilon and are not attacked;
* runs the attack on a query-counting wrapper of the model (a `DecisionModel` for attacks
  with ``decision_only = True``) and attributes the queries to the images of each call
  (forward and gradient queries separately; an attack treats the images of one call alike,
  so each gets an equal share);
* passes every candidate through `verify.verify` (clip, project onto the epsilon-ball,
  classify again, measure), so no attack can report an unverified success;
* marks images whose attack never had a usable gradient "no gradient": failed, never robust;
* derives per-image random streams from ``seed`` and each image's content
  (`abs_tf.attacks.randomness`), so results do not depend on the batch composition;
* stops attacking an image once it has used ``max_queries`` (checked between runs).

``run`` is compiled once per (attack, model, criterion) with a batch-polymorphic
``input_signature`` (class attribute ``compile_run = True``); attacks whose outer loop is Python
set ``compile_run = False`` and compile their inner parts with `Attack._compile`. Models must
therefore be traceable by `tf.function` (any Keras model or TF callable).
"""

from __future__ import annotations

import abc
import dataclasses
import functools
from typing import ClassVar

import numpy as np
import tensorflow as tf

from abs_tf.attacks.counting import IMAGES_SPEC, CountingModel, DecisionModel
from abs_tf.attacks.criteria import MISCLASSIFICATION
from abs_tf.attacks.session import Session, copy_verified, images_digest, scatter  # noqa: F401  (re-exported)
from abs_tf.attacks.verify import L0_TOLERANCE, NORMS

LABELS_SPEC = tf.TensorSpec([None], tf.int64, name="labels")
EPSILON_SPEC = tf.TensorSpec([None], tf.float32, name="epsilon")
SEED_SPEC = tf.TensorSpec([], tf.int64, name="seed")

_MAX_CACHED_MODELS = 4


@dataclasses.dataclass(frozen=True)
class ResultFields:
    """What every attack result records (numpy arrays; B images).

    attack: repr of the attack(s).  norm: "l0" | "l1" | "l2" | "linf".  criterion: its repr.
    seed: the call's seed.  labels: int64 [B], the criterion's classes.
    images_digest: a hash of the attacked images (`images_digest`), so results of other
      images are refused where they are combined.
    adversarials, is_adversarial, predictions, distances: the verified candidates (shapes in
      the subclasses): clipped to [0, 1] (and projected onto an epsilon-ball where one is
      given), re-classified (``is_adversarial``, ``predictions``) and measured from the
      original images (``distances``: {"l0", "l1", "l2", "linf"}). Images the model already
      gets wrong are adversarial at distance 0.
    no_gradient: not adversarial and the attack never had a usable input gradient ("attack
      failed (no gradient)"): such an image is not robust, the attack did not run.
    budget_exhausted: bool [B]: the image's ``max_queries`` ran out before the attack was done.
    forward_queries, gradient_queries: float64 [B], per image (verification included).
    queries: float64 [B], forward + gradient x the model's ``queries_per_gradient``.
    """

    attack: str
    norm: str
    criterion: str
    seed: int
    labels: np.ndarray
    images_digest: str
    adversarials: np.ndarray
    is_adversarial: np.ndarray
    predictions: np.ndarray
    distances: dict
    no_gradient: np.ndarray
    budget_exhausted: np.ndarray
    forward_queries: np.ndarray
    gradient_queries: np.ndarray
    queries: np.ndarray


@dataclasses.dataclass(frozen=True)
class AttackResult(ResultFields):
    """Verified output of one attack call: `ResultFields` per epsilon.

    epsilons: float32 [E] (``[inf]`` for a minimization attack called without epsilons).
    adversarials: float32 [E, B, 28, 28, 1]; is_adversarial, no_gradient: bool [E, B];
    predictions: int64 [E, B]; distances: norm -> float32 [E, B].
    full_success: every image adversarial at the largest epsilon (the unbounded-epsilon sanity
      check: a sound attack at a large enough epsilon reaches 100 %).
    """

    epsilons: np.ndarray
    full_success: bool

    @property
    def robust(self) -> np.ndarray:
        """bool [E, B]: no verified adversarial and the attack did run (had a gradient)."""
        return ~self.is_adversarial & ~self.no_gradient

    @property
    def robust_accuracy(self) -> np.ndarray:
        """float [E]: fraction of images shown robust at each epsilon (failed images are not)."""
        return self.robust.mean(axis=1)


class _Handle:
    """Per-(attack, model) state: the counting wrapper and compiled functions."""

    def __init__(self, model):
        self.model = model
        self.counted = CountingModel(model)


class Attack(abc.ABC):
    """Base of all attacks. Subclasses set ``norm`` and store hyper-parameters via `_store`.

    Class attributes: ``compile_run`` (see module doc); ``decision_only`` (``run`` gets a
    `DecisionModel`: classes only, no logits or gradients); ``accepts_starting_points``
    (minimization attacks that can start from given adversarials).
    """

    norm: str = ""
    compile_run: ClassVar[bool] = True
    decision_only: ClassVar[bool] = False
    accepts_starting_points: ClassVar[bool] = False

    def _store(self, **params):
        """Records the hyper-parameters (for `__repr__`) and sets them as attributes."""
        self._params = dict(params)
        for key, value in params.items():
            setattr(self, key, value)
        self._handles = {}

    def __repr__(self):
        params = ", ".join(f"{k}={v!r}" for k, v in getattr(self, "_params", {}).items())
        return f"{type(self).__name__}({params})"

    # -- per-model state -------------------------------------------------------------------
    def _handle(self, model) -> _Handle:
        handles = self.__dict__.setdefault("_handles", {})
        entry = handles.get(id(model))
        if entry is not None and entry.model is model:
            return entry
        if len(handles) >= _MAX_CACHED_MODELS:
            handles.pop(next(iter(handles)))
        entry = handles[id(model)] = _Handle(model)
        return entry

    def _compile(self, model, name: str, fn, input_signature):
        """``tf.function(fn(model, *args))``, cached on the model's `CountingModel` (one per
        attack and model) under ``name``; uncached for other callables."""
        counted = model._counted if isinstance(model, DecisionModel) else model
        cache = getattr(counted, "functions", None) if isinstance(counted, CountingModel) else None
        if cache is None:
            return tf.function(functools.partial(fn, model), input_signature=input_signature)
        key = (name, type(model).__name__)
        if key not in cache:
            cache[key] = tf.function(functools.partial(fn, model), input_signature=input_signature)
        return cache[key]

    def _run_function(self, model, criterion, with_epsilon: bool, with_start: bool):
        """``(images, labels, [epsilon,] seed, [starting_points]) -> (candidates, usable)``."""
        run = functools.partial(self._run_adapter, criterion=criterion)
        if not self.compile_run:
            return functools.partial(run, model)
        signature = [IMAGES_SPEC, LABELS_SPEC] + ([EPSILON_SPEC] if with_epsilon else []) + [SEED_SPEC]
        signature += [IMAGES_SPEC] if with_start else []
        return self._compile(model, f"run/{criterion!r}/{with_start}", run, signature)

    @abc.abstractmethod
    def _run_adapter(self, model, *args, criterion):
        """Calls ``run_with_status`` with the family's arguments."""

    def run_with_status(self, model, *args, **kwargs):
        """``(run(...), usable)``; attacks without gradients: usable is all True."""
        candidates = self.run(model, *args, **kwargs)
        return candidates, tf.ones(tf.shape(candidates)[:1], tf.bool)

    # -- result assembly ----------------------------------------------------------------------
    def _assemble(self, session: Session, epsilons, verified, no_gradient) -> AttackResult:
        is_adv = np.stack([v.is_adversarial for v in verified])
        return AttackResult(
            attack=repr(self), norm=self.norm, criterion=repr(session.criterion), seed=session.seed,
            labels=session.y, images_digest=session.digest(), epsilons=np.asarray(epsilons, np.float32),
            adversarials=np.stack([v.adversarials for v in verified]), is_adversarial=is_adv,
            predictions=np.stack([v.predictions for v in verified]),
            distances={n: np.stack([v.distances[n] for v in verified]) for n in NORMS},
            no_gradient=np.stack(no_gradient) & ~is_adv, budget_exhausted=session.budget_exhausted.copy(),
            forward_queries=session.ledger.forward.copy(), gradient_queries=session.ledger.gradient.copy(),
            queries=session.ledger.total(), full_success=bool(is_adv[-1].all()))

    def _attack_at(self, session: Session, epsilon, starting_points=None):
        """(Verified of all B images, no_gradient bool [B]) for one epsilon (None: unbounded)."""
        merged = copy_verified(session.clean)
        no_gradient = np.zeros(session.batch, bool)
        idx = session.within_budget(session.todo)
        if idx.size:
            candidates, usable = session.candidates(idx, epsilon, starting_points)
            v = session.verify(idx, candidates, epsilon, self.norm if epsilon is not None else None)
            scatter(merged, idx, v)
            no_gradient[idx] = ~usable
        return merged, no_gradient


def check_epsilons(epsilons) -> np.ndarray:
    eps = np.asarray(epsilons, dtype=np.float32).reshape(-1)
    if eps.size == 0 or not np.all(np.isfinite(eps)) or np.any(eps < 0):
        raise ValueError(f"epsilons must be a non-empty list of finite values >= 0, got {epsilons!r}")
    return eps


class FixedEpsilonAttack(Attack):
    """An attack that searches for an adversarial within a given perturbation budget."""

    def run(self, model, images, labels, epsilon, seed=0, criterion=MISCLASSIFICATION):
        """Raw candidates [B, 28, 28, 1].

        Args (tensors; traced once per model with a polymorphic batch dimension):
          model: counting wrapper, images -> logits.
          images: float32 [B, 28, 28, 1] in [0, 1]. labels: int64 [B] (the criterion's classes).
          epsilon: float32 [B], each image's budget in the attack's norm.
          seed: int64 scalar; random numbers come from `randomness` streams keyed by it and
            by each image's content. criterion: a `Criterion`.
        """
        raise NotImplementedError(f"{type(self).__name__} implements neither run nor run_with_status")

    def _run_adapter(self, model, images, labels, epsilon, seed, criterion):
        return self.run_with_status(model, images, labels, epsilon, seed, criterion)

    def __call__(self, model, images, labels, *, epsilons, criterion=MISCLASSIFICATION, seed: int = 0,
                 max_queries=None, l0_tolerance: float = L0_TOLERANCE) -> AttackResult:
        """Attacks ``model`` at each epsilon; returns the verified `AttackResult` ([E, B] fields).

        Args:
          model: callable images float32 [N, 28, 28, 1] in [0, 1] -> logits [N, C].
          images: float32 [B, 28, 28, 1] in [0, 1]. labels: int [B], the criterion's classes
            (true classes for `Misclassification`, targets for `TargetedMisclassification`).
          epsilons: sequence of budgets >= 0 in the attack's norm (pixel units).
          criterion: a `Criterion`. seed: int, the call's random seed.
          max_queries: optional per-image budget of queries (forward-query equivalents),
            checked before each epsilon's run.
        """
        eps = check_epsilons(epsilons)
        session = Session(self, model, images, labels, criterion=criterion, seed=seed,
                           max_queries=max_queries, l0_tolerance=l0_tolerance)
        runs = [self._attack_at(session, float(e)) for e in eps]
        return self._assemble(session, eps, [v for v, _ in runs], [n for _, n in runs])


class MinimizationAttack(Attack):
    """An attack that looks for the smallest adversarial it can find (no budget needed)."""

    def run(self, model, images, labels, seed=0, criterion=MISCLASSIFICATION, starting_points=None):
        """Raw candidates [B, 28, 28, 1] (see `FixedEpsilonAttack.run`; no epsilon).
        ``starting_points``: float32 [B, 28, 28, 1] verified adversarials to start from (only
        for attacks with ``accepts_starting_points``), else None."""
        raise NotImplementedError(f"{type(self).__name__} implements neither run nor run_with_status")

    def _run_adapter(self, model, images, labels, seed, starting_points=None, *, criterion):
        return self.run_with_status(model, images, labels, seed, criterion, starting_points)

    def check_starting_points(self, session: Session, starting_points):
        """float32 [B, 28, 28, 1] or None; refuses (ValueError) starts that are not adversarial."""
        if starting_points is None:
            return None
        if not self.accepts_starting_points:
            raise TypeError(f"{type(self).__name__} does not take starting_points")
        start = np.asarray(starting_points, np.float32)
        if start.shape != session.x.shape:
            raise ValueError(f"starting_points have shape {start.shape}, images {session.x.shape}")
        idx = session.todo
        if idx.size:
            v = session.verify(idx, start[idx])
            bad = int((~v.is_adversarial).sum())
            if bad:
                raise ValueError(f"starting_points: {bad} of {idx.size} are not adversarial for {session.criterion!r}"
                                 " (images the model already misclassifies are not checked)")
            start = start.copy()
            start[idx] = v.adversarials  # clipped to [0, 1], as verified
        return start

    def __call__(self, model, images, labels, *, epsilons=None, criterion=MISCLASSIFICATION, seed: int = 0,
                 starting_points=None, max_queries=None, l0_tolerance: float = L0_TOLERANCE) -> AttackResult:
        """Runs the attack once; verifies it unconstrained (``epsilons=None``: E = 1, epsilon
        inf) or projected onto each epsilon-ball (foolbox semantics). See `FixedEpsilonAttack`;
        ``starting_points``: adversarials to start from (attacks with ``accepts_starting_points``)."""
        session = Session(self, model, images, labels, criterion=criterion, seed=seed,
                           max_queries=max_queries, l0_tolerance=l0_tolerance)
        start = self.check_starting_points(session, starting_points)
        merged, no_gradient = self._attack_at(session, None, start)
        if epsilons is None:
            return self._assemble(session, [np.inf], [merged], [no_gradient])
        eps = check_epsilons(epsilons)
        verified = []
        for e in eps:
            v = copy_verified(session.clean)
            if session.todo.size:
                scatter(v, session.todo, session.verify(session.todo, merged.adversarials[session.todo], float(e),
                                                         self.norm))
            verified.append(v)
        return self._assemble(session, eps, verified, [no_gradient] * len(eps))
