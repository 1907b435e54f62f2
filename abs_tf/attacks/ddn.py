"""DDN: Decoupling Direction and Norm (Rony et al., CVPR 2019, https://arxiv.org/abs/1811.09600), L2.

Our implementation of the algorithm (as in adversarial-library's ``ddn`` and foolbox 3's
``DDNAttack``), batched and written as one graph loop. Per step i of ``steps``:

    alpha_i = min_stepsize + (max_stepsize - min_stepsize) (1 + cos(pi i / steps)) / 2
    g = ∇_δ loss(x + δ) / ||∇_δ loss(x + δ)||_2            (the loss grows towards success)
    δ <- δ + alpha_i g                                       (the direction)
    ε <- ε (1 - γ) if x + δ_old is adversarial else ε (1 + γ);  ε <- min(ε, worst norm)
    δ <- ε δ / ||δ||_2;  δ <- clip(x + δ, 0, 1) - x          (the norm, decoupled)

keeping per image the adversarial iterate with the smallest ||δ||_2. The iterate after the last
step is checked too (one extra forward query per image). An image whose gradient is all zero
does not move (and is reported "no gradient" unless adversarial).
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from abs_tf.attacks.base import MinimizationAttack
from abs_tf.attacks.criteria import MISCLASSIFICATION
from abs_tf.attacks.losses import check_loss, loss_and_gradient


def _norms(x):
    return tf.norm(tf.reshape(x, [tf.shape(x)[0], -1]), axis=1)


def cosine_schedule(i, steps: int, start: float, end: float):
    """start -> end over ``steps`` steps by cosine annealing (float32 scalar; i a step tensor)."""
    i = tf.cast(i, tf.float32)
    return end + (start - end) * (1.0 + tf.cos(np.pi * i / steps)) / 2.0


class DDN(MinimizationAttack):
    """DDN L2 minimization attack.

    Args:
      steps: iterations (default 100, as the paper's MNIST runs and adversarial-library).
      gamma: relative change of the norm budget per step (default 0.05).
      init_epsilon: initial norm budget (default 1.0).
      max_stepsize, min_stepsize: the cosine-annealed step size of δ (default 1.0 -> 0.01).
      loss: "crossentropy" (default, the paper's) or "margin" (see `abs_tf.attacks.losses`).
    Cost: ``steps`` forward + gradient queries and 1 forward query per image.
    """

    norm = "l2"

    def __init__(self, *, steps: int = 100, gamma: float = 0.05, init_epsilon: float = 1.0,
                 max_stepsize: float = 1.0, min_stepsize: float = 0.01, loss: str = "crossentropy"):
        if steps < 1 or not 0 < gamma < 1 or init_epsilon <= 0 or not 0 < min_stepsize <= max_stepsize:
            raise ValueError("DDN needs steps >= 1, 0 < gamma < 1, init_epsilon > 0, 0 < min_stepsize <= max_stepsize")
        self._store(steps=int(steps), gamma=float(gamma), init_epsilon=float(init_epsilon),
                    max_stepsize=float(max_stepsize), min_stepsize=float(min_stepsize), loss=check_loss(loss))

    def run_with_status(self, model, images, labels, seed=0, criterion=MISCLASSIFICATION, starting_points=None):
        del seed, starting_points  # deterministic; starts from the image
        batch = tf.shape(images)[:1]
        worst = _norms(tf.maximum(images, 1.0 - images))
        delta = tf.zeros_like(images)
        epsilon = tf.fill(batch, self.init_epsilon)
        best = images
        best_norm = tf.fill(batch, np.inf)
        usable = tf.zeros(batch, tf.bool)
        for i in tf.range(self.steps):
            alpha = cosine_schedule(i, self.steps, self.max_stepsize, self.min_stepsize)
            logits, grad, ok = loss_and_gradient(model, images + delta, labels, self.loss, criterion)
            usable = tf.logical_or(usable, ok)
            adversarial = criterion(logits, labels)
            size = _norms(delta)
            better = tf.logical_and(adversarial, size < best_norm)
            best = tf.where(better[:, None, None, None], images + delta, best)
            best_norm = tf.where(better, size, best_norm)
            delta = delta + alpha * grad / tf.maximum(_norms(grad), 1e-12)[:, None, None, None]
            epsilon = tf.minimum(epsilon * tf.where(adversarial, 1.0 - self.gamma, 1.0 + self.gamma), worst)
            delta = delta * (epsilon / tf.maximum(_norms(delta), 1e-12))[:, None, None, None]
            delta = tf.clip_by_value(images + delta, 0.0, 1.0) - images
        adversarial = criterion(model(images + delta), labels)
        better = tf.logical_and(adversarial, _norms(delta) < best_norm)
        return tf.where(better[:, None, None, None], images + delta, best), usable

    def run(self, model, images, labels, seed=0, criterion=MISCLASSIFICATION, starting_points=None):
        return self.run_with_status(model, images, labels, seed, criterion, starting_points)[0]
