"""FMN: Fast Minimum-Norm attacks (Pintor et al., NeurIPS 2021, https://arxiv.org/abs/2102.12827);
L0, L1, L2, L∞.

Our implementation of the algorithm (as the authors' code and foolbox 3's
``fast_minimum_norm.py``), batched and written as one graph loop. With the loss
``l = max_{k≠y} z_k - z_y`` (minus the criterion's margin; > 0 once adversarial), per step i:

    alpha_i, gamma_i: cosine-annealed from max_stepsize to min_stepsize, gamma to 0.001
    ε <- min(ε (1 - gamma_i), best norm)         if x + δ is adversarial
         ε (1 + gamma_i)                          elif an adversarial was found before
         max(||δ||_p + |l| / ||∇l||_dual, ε (1 + gamma_i))   else (the linearised boundary
                                                  distance; the max is ours, see the code)
    (L0: ε moves by at least one pixel and stays an integer >= 1); ε <- min(ε, worst norm)
    δ <- δ + alpha_i ∇l / ||∇l||_2;  δ <- projection onto the ε-ball of the norm;  clip to [0, 1]

keeping per image the adversarial iterate with the smallest norm (and checking the last one).
From ``starting_points`` (verified adversarials) it first bisects the segment between image and
start for the boundary (``binary_search_steps`` forward queries per image) and starts there.
Cost: ``steps`` forward + gradient queries, 1 forward query per image (+ the bisection).
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from abs_tf.attacks.base import MinimizationAttack
from abs_tf.attacks.criteria import MISCLASSIFICATION
from abs_tf.attacks.ddn import cosine_schedule
from abs_tf.attacks.losses import loss_and_gradient
from abs_tf.attacks.verify import L0_TOLERANCE, project

FMN_NORMS = ("l0", "l1", "l2", "linf")
_DUAL = {"l1": np.inf, "l2": 2, "linf": 1}


def lp_norms(delta, norm: str):
    """float32 [B]: the norm of each row of ``delta`` [B, ...] (l0 counts |.| > `L0_TOLERANCE`)."""
    flat = tf.reshape(delta, [tf.shape(delta)[0], -1])
    if norm == "l0":
        return tf.reduce_sum(tf.cast(tf.abs(flat) > L0_TOLERANCE, tf.float32), axis=1)
    order = {"l1": 1, "l2": 2, "linf": np.inf}[norm]
    return tf.norm(flat, ord=order, axis=1)


def mid_points(x0, x1, fraction, norm: str):
    """Points between x0 (fraction 0) and x1 (fraction 1) [B, ...], ``fraction`` float [B], for
    the boundary search from a starting point: L2 the segment; L∞ the change clipped to
    ±fraction; L1 the change shrunk by (1 - fraction); L0 the fraction * 784 largest changes."""
    f = tf.reshape(fraction, [-1, 1, 1, 1])
    d = x1 - x0
    if norm == "l2":
        return x0 + f * d
    if norm == "linf":
        return x0 + tf.clip_by_value(d, -f, f)
    if norm == "l1":
        return x0 + tf.sign(d) * tf.nn.relu(tf.abs(d) - (1.0 - f))
    return project(x0, x1, "l0", fraction * 784.0)


class FMN(MinimizationAttack):
    """Fast Minimum-Norm minimization attack.

    Args:
      norm: "l0", "l1", "l2" (default) or "linf".
      steps: iterations (default 100, as foolbox).
      max_stepsize: initial step of δ (default 1.0; 10.0 for L∞, where an L2-normalised
        gradient step moves each pixel ~1/28 of it). min_stepsize: final step (default
        max_stepsize / 100).
      gamma: initial relative change of ε (default 0.05; annealed to 0.001).
      binary_search_steps: bisection steps from ``starting_points`` (default 10).
    """

    accepts_starting_points = True

    def __init__(self, *, norm: str = "l2", steps: int = 100, max_stepsize=None, min_stepsize=None,
                 gamma: float = 0.05, binary_search_steps: int = 10):
        if norm not in FMN_NORMS:
            raise ValueError(f"FMN supports norms {FMN_NORMS}, got {norm!r}")
        max_stepsize = float(max_stepsize if max_stepsize is not None else (10.0 if norm == "linf" else 1.0))
        min_stepsize = float(min_stepsize if min_stepsize is not None else max_stepsize / 100)
        if steps < 1 or not 0 < min_stepsize <= max_stepsize or not 0 < gamma < 1 or binary_search_steps < 0:
            raise ValueError("FMN needs steps >= 1, 0 < min_stepsize <= max_stepsize, 0 < gamma < 1, "
                             "binary_search_steps >= 0")
        self._store(norm=norm, steps=int(steps), max_stepsize=max_stepsize, min_stepsize=min_stepsize,
                    gamma=float(gamma), binary_search_steps=int(binary_search_steps))

    def _boundary_start(self, model, images, labels, start, criterion):
        """δ [B, ...] at the adversarial end of a bisection between images and ``start``."""
        lower = tf.zeros(tf.shape(images)[:1])
        upper = tf.ones(tf.shape(images)[:1])
        for _ in tf.range(self.binary_search_steps):
            middle = (lower + upper) / 2.0
            adversarial = criterion(model(mid_points(images, start, middle, self.norm)), labels)
            lower = tf.where(adversarial, lower, middle)
            upper = tf.where(adversarial, middle, upper)
        return mid_points(images, start, upper, self.norm) - images

    def _update_epsilon(self, epsilon, adversarial, found, size, best_norm, loss, grad, gamma, worst):
        if self.norm == "l0":
            shrink = tf.minimum(tf.minimum(epsilon - 1.0, tf.floor(epsilon * (1.0 - gamma))), best_norm)
            grow = tf.maximum(epsilon + 1.0, tf.floor(epsilon * (1.0 + gamma)))
            epsilon = tf.maximum(tf.where(adversarial, shrink, grow), 1.0)
        else:
            flat = tf.reshape(grad, [tf.shape(grad)[0], -1])
            dual = tf.norm(flat, ord=_DUAL[self.norm], axis=1)
            to_boundary = tf.abs(loss) / tf.maximum(dual, 1e-12)
            # Before the first success: the linear estimate of the boundary, but growing by at
            # least (1 + gamma) per step. The estimate alone can stall below the boundary when the
            # clip to [0, 1] eats part of each step (seen on our CNN: no adversarial in 100 steps).
            extrapolated = tf.where(tf.math.is_finite(epsilon),
                                    tf.maximum(size + to_boundary, epsilon * (1.0 + gamma)), size + to_boundary)
            epsilon = tf.where(adversarial, tf.minimum(epsilon * (1.0 - gamma), best_norm),
                               tf.where(found, epsilon * (1.0 + gamma), extrapolated))
        return tf.minimum(epsilon, worst)

    def run_with_status(self, model, images, labels, seed=0, criterion=MISCLASSIFICATION, starting_points=None):
        del seed  # deterministic
        batch = tf.shape(images)[:1]
        if starting_points is not None:
            delta = self._boundary_start(model, images, labels, starting_points, criterion)
        else:
            delta = tf.zeros_like(images)
        if self.norm == "l0":
            worst = tf.fill(batch, 784.0)
            epsilon = tf.maximum(1.0, lp_norms(delta, "l0"))
        else:
            worst = lp_norms(tf.maximum(images, 1.0 - images), self.norm)
            epsilon = tf.fill(batch, np.inf)
        best = images
        best_norm = tf.fill(batch, np.inf)
        found = tf.zeros(batch, tf.bool)
        usable = tf.zeros(batch, tf.bool)
        for i in tf.range(self.steps):
            alpha = cosine_schedule(i, self.steps, self.max_stepsize, self.min_stepsize)
            gamma = cosine_schedule(i, self.steps, self.gamma, 0.001)
            logits, grad, ok = loss_and_gradient(model, images + delta, labels, "margin", criterion)
            loss = -criterion.margin(logits, labels)
            usable = tf.logical_or(usable, ok)
            adversarial = criterion(logits, labels)
            size = lp_norms(delta, self.norm)
            better = tf.logical_and(adversarial, size < best_norm)
            best = tf.where(better[:, None, None, None], images + delta, best)
            best_norm = tf.where(better, size, best_norm)
            found = tf.logical_or(found, adversarial)
            epsilon = self._update_epsilon(epsilon, adversarial, found, size, best_norm, loss, grad, gamma, worst)
            step = grad / tf.maximum(lp_norms(grad, "l2"), 1e-12)[:, None, None, None]
            delta = project(images, images + delta + alpha * step, self.norm, epsilon) - images
        adversarial = criterion(model(images + delta), labels)
        better = tf.logical_and(adversarial, lp_norms(delta, self.norm) < best_norm)
        return tf.where(better[:, None, None, None], images + delta, best), usable

    def run(self, model, images, labels, seed=0, criterion=MISCLASSIFICATION, starting_points=None):
        return self.run_with_status(model, images, labels, seed, criterion, starting_points)[0]
