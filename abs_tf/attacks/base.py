"""Attack base classes and the result of an attack (foolbox 3's design, TF only).

Two families:

* `FixedEpsilonAttack`: subclasses write ``run(model, images, labels, epsilon)`` with
  ``epsilon`` float32 [B] (one budget per image, so searches over epsilon batch well) and
  return raw candidates [B, 28, 28, 1].
* `MinimizationAttack`: subclasses write ``run(model, images, labels)`` and return raw
  candidates that try to be adversarial with as small a perturbation as possible.

`Attack.__call__` is the only public entry point. It checks inputs, runs the attack on a
query-counting wrapper of the model, and passes every candidate through `verify.verify`
(clip to [0, 1], project onto the epsilon-ball, classify again, measure distances), so no
attack can report an unverified success.

``run`` is compiled once per (attack, model) with a batch-polymorphic ``input_signature``
(class attribute ``compile_run = True``); attacks whose outer loop is Python (binary
searches, per-image loops) set ``compile_run = False`` and compile their inner parts with
`Attack._compile`. Models must therefore be traceable by `tf.function` (any Keras model or TF
callable); for eager-only models use ``tf.config.run_functions_eagerly(True)``.
"""

from __future__ import annotations

import abc
import dataclasses
import functools
from typing import ClassVar

import numpy as np
import tensorflow as tf

from abs_tf.attacks.counting import IMAGES_SPEC, CountingModel
from abs_tf.attacks.verify import L0_TOLERANCE, NORMS, check_norm, verify
from abs_tf.checks import check_images, check_labels

LABELS_SPEC = tf.TensorSpec([None], tf.int64, name="labels")
EPSILON_SPEC = tf.TensorSpec([None], tf.float32, name="epsilon")

_MAX_CACHED_MODELS = 4

# Canonical numeric orders for the norms (cleverhans convention).
ORDERS = {"l2": 2, "linf": np.inf}


@dataclasses.dataclass(frozen=True)
class AttackResult:
    """Verified output of one attack call (numpy arrays).

    attack: repr of the attack.  norm: "l0" | "l2" | "linf".
    epsilons: float32 [E] (``[inf]`` for a minimization attack called without epsilons).
    adversarials: float32 [E, B, 28, 28, 1] in [0, 1], clipped and projected onto each
      epsilon-ball; where not adversarial, still the (non-adversarial) candidate.
    is_adversarial: bool [E, B], re-verified by classifying `adversarials` again.
    predictions: int64 [E, B], the model's classes for `adversarials`.
    distances: {"l0", "l2", "linf"} -> float32 [E, B], measured from the original images.
    queries: model queries per image for the whole call (images evaluated / B; gradients
      weighted by ``model.queries_per_gradient``; includes the verification passes).
    """

    attack: str
    norm: str
    epsilons: np.ndarray
    adversarials: np.ndarray
    is_adversarial: np.ndarray
    predictions: np.ndarray
    distances: dict
    queries: float

    @property
    def robust_accuracy(self) -> np.ndarray:
        """float [E]: fraction of images with no verified adversarial at each epsilon."""
        return 1.0 - self.is_adversarial.mean(axis=1)


class _Handle:
    """Per-(attack, model) state: the counting wrapper and compiled functions."""

    def __init__(self, model):
        self.model = model
        self.counted = CountingModel(model)


class Attack(abc.ABC):
    """Base of all attacks. Subclasses set ``norm`` and store hyper-parameters via `_store`."""

    norm: str = ""
    compile_run: ClassVar[bool] = True

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
        cache = getattr(model, "functions", None) if isinstance(model, CountingModel) else None
        if cache is None:
            return tf.function(functools.partial(fn, model), input_signature=input_signature)
        if name not in cache:
            cache[name] = tf.function(functools.partial(fn, model), input_signature=input_signature)
        return cache[name]

    @abc.abstractmethod
    def _candidates(self, handle: _Handle, images, labels, epsilon):
        """Raw candidates [B, 28, 28, 1] (tensor or array), not yet verified."""

    def _verify(self, handle, images, labels, candidates, epsilon, l0_tolerance):
        return verify(handle.counted.logits, images, labels, candidates, norm=self.norm,
                      epsilon=epsilon, l0_tolerance=l0_tolerance)

    def _result(self, epsilons, verified, queries, batch) -> AttackResult:
        return AttackResult(
            attack=repr(self), norm=self.norm, epsilons=np.asarray(epsilons, np.float32),
            adversarials=np.stack([v.adversarials for v in verified]),
            is_adversarial=np.stack([v.is_adversarial for v in verified]),
            predictions=np.stack([v.predictions for v in verified]),
            distances={n: np.stack([v.distances[n] for v in verified]) for n in NORMS},
            queries=queries / max(batch, 1))


def _check_inputs(images, labels):
    images = check_images(images)
    labels = check_labels(labels, images.shape[0])
    return images, labels


def _check_epsilons(epsilons) -> np.ndarray:
    eps = np.asarray(epsilons, dtype=np.float32).reshape(-1)
    if eps.size == 0 or not np.all(np.isfinite(eps)) or np.any(eps < 0):
        raise ValueError(f"epsilons must be a non-empty list of finite values >= 0, got {epsilons!r}")
    return eps


class FixedEpsilonAttack(Attack):
    """An attack that searches for an adversarial within a given perturbation budget."""

    @abc.abstractmethod
    def run(self, model, images, labels, epsilon):
        """Raw candidates [B, 28, 28, 1].

        Args (tensors; traced once per model with a polymorphic batch dimension):
          model: counting wrapper, images -> logits.
          images: float32 [B, 28, 28, 1] in [0, 1]. labels: int64 [B].
          epsilon: float32 [B], each image's budget in the attack's norm.
        """

    def _candidates(self, handle, images, labels, epsilon):
        if self.compile_run:
            fn = self._compile(handle.counted, "run", self.run, [IMAGES_SPEC, LABELS_SPEC, EPSILON_SPEC])
        else:
            fn = functools.partial(self.run, handle.counted)
        return fn(images, labels, epsilon)

    def __call__(self, model, images, labels, *, epsilons, l0_tolerance: float = L0_TOLERANCE) -> AttackResult:
        """Attacks ``model`` at each epsilon; returns the verified `AttackResult` ([E, B] fields).

        Args:
          model: callable images float32 [N, 28, 28, 1] in [0, 1] -> logits [N, C].
          images: float32 [B, 28, 28, 1] in [0, 1]. labels: int [B], true classes.
          epsilons: sequence of budgets >= 0 in the attack's norm (pixel units).
        """
        images, labels = _check_inputs(images, labels)
        eps = _check_epsilons(epsilons)
        handle = self._handle(model)
        start = handle.counted.queries
        batch = int(images.shape[0])
        verified = []
        for e in eps:
            epsilon = tf.fill([batch], tf.constant(e, tf.float32))
            candidates = self._candidates(handle, images, labels, epsilon)
            verified.append(self._verify(handle, images, labels, candidates, float(e), l0_tolerance))
        return self._result(eps, verified, handle.counted.queries - start, batch)


class MinimizationAttack(Attack):
    """An attack that looks for the smallest adversarial it can find (no budget needed)."""

    @abc.abstractmethod
    def run(self, model, images, labels):
        """Raw candidates [B, 28, 28, 1] (see `FixedEpsilonAttack.run`; no epsilon)."""

    def _candidates(self, handle, images, labels, epsilon=None):
        if self.compile_run:
            fn = self._compile(handle.counted, "run", self.run, [IMAGES_SPEC, LABELS_SPEC])
        else:
            fn = functools.partial(self.run, handle.counted)
        return fn(images, labels)

    def __call__(self, model, images, labels, *, epsilons=None, l0_tolerance: float = L0_TOLERANCE) -> AttackResult:
        """Runs the attack once; verifies it unconstrained (``epsilons=None``: E = 1, epsilon
        inf) or projected onto each epsilon-ball (foolbox semantics). See `FixedEpsilonAttack`."""
        images, labels = _check_inputs(images, labels)
        handle = self._handle(model)
        start = handle.counted.queries
        batch = int(images.shape[0])
        candidates = self._candidates(handle, images, labels)
        if epsilons is None:
            eps = np.array([np.inf], np.float32)
            verified = [self._verify(handle, images, labels, candidates, None, l0_tolerance)]
        else:
            eps = _check_epsilons(epsilons)
            verified = [self._verify(handle, images, labels, candidates, float(e), l0_tolerance) for e in eps]
        return self._result(eps, verified, handle.counted.queries - start, batch)


def as_order(norm: str):
    """"l2" -> 2, "linf" -> np.inf (cleverhans' ``norm`` argument)."""
    check_norm(norm)
    if norm not in ORDERS:
        raise ValueError(f"gradient attacks support norms {tuple(ORDERS)}, got {norm!r}")
    return ORDERS[norm]


def margin(logits, labels):
    """float [B]: logit of the true class minus the largest other logit (> 0: correct)."""
    labels = tf.cast(labels, tf.int64)
    num_classes = tf.shape(logits)[-1]
    onehot = tf.one_hot(labels, num_classes) > 0.5
    true = tf.reduce_sum(tf.where(onehot, logits, tf.zeros_like(logits)), axis=-1)
    other = tf.reduce_max(tf.where(onehot, tf.fill(tf.shape(logits), logits.dtype.min), logits), axis=-1)
    return true - other


LOSSES = ("crossentropy", "margin")


def _crossentropy(labels, logits):
    logits = tf.convert_to_tensor(logits)
    onehot = tf.one_hot(tf.cast(labels, tf.int64), tf.shape(logits)[-1]) > 0.5
    true = tf.reduce_sum(tf.where(onehot, logits, tf.zeros_like(logits)), axis=-1, keepdims=True)
    others = tf.where(onehot, tf.fill(tf.shape(logits), -np.inf), logits - true)
    return tf.math.softplus(tf.reduce_logsumexp(others, axis=-1))


def attack_loss(name: str):
    """Loss maximised by the gradient attacks, ``(labels [B], logits [B, C]) -> [B]``.

    "crossentropy": softmax cross-entropy of the true label (CleverHans' default), written as
    ``log(1 + Σ_{c≠y} exp(z_c - z_y))``: the same function as
    `tf.nn.sparse_softmax_cross_entropy_with_logits`, but its gradient stays accurate for
    confident models (TF's ``softmax - onehot`` computes ``1 - p_y`` by cancellation and loses
    the true-class term once p_y rounds to 1 in float32, i.e. at margins above ~15).
    "margin": largest other logit minus the true logit (CW's f6 / -`margin`); insensitive to
    the logit scale, which matters for models with tiny logit differences such as ABS
    (logits = -losses; its calibrated softmax multiplies them by 440).
    """
    if name == "crossentropy":
        return _crossentropy
    if name == "margin":
        return lambda labels, logits: -margin(logits, labels)
    raise ValueError(f"loss must be one of {LOSSES}, got {name!r}")


def loss_and_gradient(model, images, labels, loss: str = "crossentropy"):
    """The attack loss (see `attack_loss`) and its input gradient.

    Returns: logits [B, C], gradient float32 [B, 28, 28, 1] of the per-image loss (zeros
    where the model gives no gradient).
    """
    loss_fn = attack_loss(loss)
    with tf.GradientTape() as tape:
        tape.watch(images)
        logits = model(images)
        value = loss_fn(labels=labels, logits=logits)
    grad = tape.gradient(value, images, unconnected_gradients=tf.UnconnectedGradients.ZERO)
    return logits, grad
