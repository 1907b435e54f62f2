"""Distal ("trash") adversarials (Schott et al. 2019, Fig. 4 and the release's demo).

Start from uniform noise and raise a target class's probability until it reaches
``threshold`` (0.9): SGD with momentum 0.95 and learning rate 1 (torch's update
``v = momentum v + g; x = clip(x - lr v, 0, 1)``), at most ``steps`` steps (the paper: up to
10 000). The probabilities are the model's calibrated ones where it has them
(ABS's ``predict_proba``: a scaled softmax with an offset, low on images no class
explains), else the softmax of its logits. The loss descended (``loss``):

* "logit" (default): minus the target's logit (for ABS: the target class's loss, with its
  envelope gradient): the strongest of the three on ABS;
* "crossentropy": the softmax cross-entropy of the target on the model's logits, as the
  release did. On ABS (logits = -losses, differences ~0.01) it mostly pushes away from the
  other classes and stalls: on 10 noise images (registry "abs", targets 0-9, seed 0, 200
  steps) the calibrated p stays at 0.1 for all 10 (the target becomes the top class, but its
  loss stays ~0.19), while "logit" reaches p >= 0.9 on all 10 within 36-59 steps (target loss
  ~0.013: the class's VAE explains the image, so it is no longer noise);
* "probability": ``-log p_target`` of the calibrated probabilities, whose gradient vanishes on
  ABS where the offset dominates (on noise every class has p = 0.1: the search does not move).

Gradients: the model's own
(``gradient="model"``; for ABS its envelope gradient; through a declared binarization
straight through, `abs_tf.attacks.StraightThrough`) or estimated from probability queries
only (``gradient="estimated"``: antithetic Gaussian sampling, `abs_tf.attacks.EstimatedGradients`;
the release used coordinate-wise finite differences).

The paper's finding to check: the CNN (and Madry et al.) reach high confidence on noise-like
images; ABS rarely does. `DistalResult` re-evaluates the final images once more (the
verification) and reports, per model, the fraction that reached the threshold and the mean
target probability.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import tensorflow as tf

from abs_tf.attacks.criteria import class_crossentropy
from abs_tf.attacks.decision.oracle import DEFAULT_MAX_BATCH, check_positive, unflat
from abs_tf.attacks.estimation import EstimatedGradients, StraightThrough
from abs_tf.models.abs.confidence import confidence_softmax
from abs_tf.models.abs.model import ABS
from abs_tf.models.preprocessing import front_end

GRADIENTS = ("model", "estimated")
LOSSES = ("logit", "crossentropy", "probability")
_STREAM = 51


@dataclasses.dataclass(frozen=True)
class DistalResult:
    """Distal adversarials (numpy).

    images: float32 [N, 28, 28, 1] in [0, 1], the final images. targets: int64 [N].
    probabilities: float32 [N, C] of the final images, evaluated again after the search.
    reached: bool [N], probabilities[target] >= threshold. steps: int64 [N], updates made.
    queries: float64 [N], forward queries + gradient queries x their cost (1 for the model's
    own gradients, 2 x samples for estimated ones), the final evaluation included.
    """

    images: np.ndarray
    targets: np.ndarray
    probabilities: np.ndarray
    reached: np.ndarray
    steps: np.ndarray
    queries: np.ndarray
    threshold: float

    @property
    def confidence(self) -> np.ndarray:
        """float32 [N]: the target class's final probability."""
        return self.probabilities[np.arange(self.targets.size), self.targets]

    @property
    def reached_fraction(self) -> float:
        return float(np.mean(self.reached))

    @property
    def mean_confidence(self) -> float:
        return float(np.mean(self.confidence))


def calibration(model):
    """``logits -> probabilities [N, C]`` of ``model``: ABS's calibrated softmax
    (`abs_tf.models.abs.confidence.confidence_softmax`, what its ``predict_proba`` computes) for
    ABS models, the softmax for the others."""
    return confidence_softmax if isinstance(model, ABS) else (lambda logits: tf.nn.softmax(logits, axis=-1))


def _in_chunks(fn, x, max_batch):
    return np.concatenate([np.asarray(fn(tf.constant(x[i:i + max_batch])), np.float32)
                           for i in range(0, max(x.shape[0], 1), max_batch)])


def distal_adversarials(model, targets, *, seed: int = 0, steps: int = 1000, learning_rate: float = 1.0,
                        momentum: float = 0.95, threshold: float = 0.9, loss: str = "logit",
                        gradient: str = "model", samples: int = 50, sigma: float = 0.01,
                        max_batch: int = DEFAULT_MAX_BATCH) -> DistalResult:
    """Distal adversarials for ``model``, one per entry of ``targets`` (module doc).

    Args:
      model: images float32 [N, 28, 28, 1] in [0, 1] -> logits [N, C] (probabilities: see
        `calibration`). targets: int [N], the classes to raise.
      seed: noise image n is ``default_rng([seed, n])``'s uniform draw (independent of N).
      steps, learning_rate, momentum, threshold, loss: the search (module doc).
      gradient: "model" or "estimated"; samples, sigma: the estimator's antithetic pairs and
        probe size. max_batch: images per model call in the final evaluation.
    """
    if gradient not in GRADIENTS:
        raise ValueError(f"gradient must be one of {GRADIENTS}, got {gradient!r}")
    if loss not in LOSSES:
        raise ValueError(f"loss must be one of {LOSSES}, got {loss!r}")
    check_positive(learning_rate=learning_rate, threshold=threshold, max_batch=max_batch, samples=samples)
    if steps < 0 or not 0 <= momentum < 1:
        raise ValueError(f"distal adversarials need steps >= 0 and momentum in [0, 1), got {steps}, {momentum}")
    targets = np.asarray(targets, np.int64).reshape(-1)
    n = targets.size
    calibrate = calibration(model)
    # A declared front end (binarization) is differentiated straight through (BPDA).
    scores = model if front_end(model) is None else StraightThrough(model)
    if gradient == "estimated":
        scores = EstimatedGradients(model, method="gaussian", samples=samples, sigma=sigma, seed=seed)
    gradient_cost = getattr(scores, "queries_per_gradient", 1)
    x = np.stack([np.random.default_rng([seed, i, _STREAM]).uniform(0.0, 1.0, 784) for i in range(n)]).astype(np.float32)
    velocity = np.zeros_like(x)
    active = np.ones(n, bool)
    taken = np.zeros(n, np.int64)
    queries = np.zeros(n, np.float64)
    for step in range(steps + 1):
        idx = np.flatnonzero(active)
        if idx.size == 0:
            break
        images = tf.constant(unflat(x[idx]))
        labels = tf.constant(targets[idx])
        with tf.GradientTape() as tape:
            tape.watch(images)
            logits = scores(images)
            p = tf.gather(calibrate(logits), labels, batch_dims=1)
            if loss == "crossentropy":
                objective = class_crossentropy(logits, labels)
            elif loss == "logit":
                objective = -tf.gather(logits, labels, batch_dims=1)
            else:
                objective = -tf.math.log(tf.maximum(p, 1e-30))
        queries[idx] += 1
        done = np.asarray(p) >= threshold
        active[idx[done]] = False
        if step == steps or done.all():
            continue
        g = tape.gradient(objective, images)
        if g is None:
            raise ValueError(f"{model!r} gives no input gradient: use gradient='estimated'")
        g = g.numpy().reshape(idx.size, -1)
        queries[idx] += gradient_cost
        move = idx[~done]
        velocity[move] = momentum * velocity[move] + g[~done]
        x[move] = np.clip(x[move] - learning_rate * velocity[move], 0.0, 1.0)
        taken[move] += 1
    final = _in_chunks(lambda images: calibrate(model(images)), unflat(x), max_batch)
    queries += 1
    reached = final[np.arange(n), targets] >= threshold
    return DistalResult(images=unflat(x), targets=targets, probabilities=final, reached=reached, steps=taken,
                        queries=queries, threshold=float(threshold))
