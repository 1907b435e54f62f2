"""DeepFool (Moosavi-Dezfooli et al. 2016, https://arxiv.org/abs/1511.04599), L2 and L∞.

Not in CleverHans' TF2 set; our implementation, following foolbox 3's
(`foolbox/attacks/deepfool.py`): candidate classes are the ``candidates - 1`` highest-scoring
wrong classes of the clean image; per step, for each candidate k the logit difference
f_k = z_k - z_y and its input gradient w_k are computed, the closest linearised boundary

    L2:  k* = argmin |f_k| / ||w_k||_2,  step = (|f_k*| + 1e-4) / ||w_k*||_2² · w_k*
    L∞:  k* = argmin |f_k| / ||w_k||_1,  step = (|f_k*| + 1e-4) / ||w_k*||_1 · sign(w_k*)

is stepped to, accumulating p; the iterate is x + (1 + overshoot) p, clipped to [0, 1]. An
image stops (is frozen) once adversarial. On a linear model one step is exact; the result is
(1 + overshoot) times the minimal perturbation. On a model whose boundary near x is the corner
of several linear pieces the steps are alternating projections, which converge to the minimum.
With a `TargetedMisclassification` criterion the one candidate is the target class:
f = z_t - max_{k≠t} z_k.

Cost per step: ``candidates - 1`` forward and gradient rows per image (one batched pass over
copies of each image, one per candidate class).
"""

from __future__ import annotations

import tensorflow as tf

from abs_tf.attacks.base import MinimizationAttack
from abs_tf.attacks.criteria import MISCLASSIFICATION
from abs_tf.attacks.losses import clean_gradient


class DeepFool(MinimizationAttack):
    """DeepFool minimization attack.

    Args:
      norm: "l2" (default) or "linf".
      steps: maximal iterations (default 50).
      candidates: number of classes considered, including the true one (default 10).
      overshoot: relative overshoot of the accumulated perturbation (default 0.02).
    """

    def __init__(self, *, norm: str = "l2", steps: int = 50, candidates: int = 10, overshoot: float = 0.02):
        if norm not in ("l2", "linf"):
            raise ValueError(f"DeepFool supports norms 'l2' and 'linf', got {norm!r}")
        if candidates < 2 or steps < 1 or overshoot < 0:
            raise ValueError("DeepFool needs candidates >= 2, steps >= 1, overshoot >= 0")
        self._store(norm=norm, steps=int(steps), candidates=int(candidates), overshoot=float(overshoot))

    def run_with_status(self, model, images, labels, seed=0, criterion=MISCLASSIFICATION, starting_points=None):
        del seed, starting_points  # deterministic; starts from the image
        logits = model(images)
        num_classes = logits.shape[-1]
        k = 1 if criterion.targeted else min(self.candidates, num_classes) - 1
        onehot = tf.one_hot(labels, num_classes) > 0.5
        wrong = tf.where(onehot, tf.fill(tf.shape(logits), logits.dtype.min), logits)
        others = tf.math.top_k(wrong, k=k).indices  # [B, k] (targeted: unused)
        done = criterion(logits, labels)
        usable = tf.zeros(tf.shape(images)[:1], tf.bool)
        p_total = tf.zeros_like(images)
        x = images
        for _ in tf.range(self.steps):
            # One pass over k copies of each image: row b*k + j holds image b for candidate j.
            xr = tf.repeat(x, k, axis=0)
            with tf.GradientTape() as tape:
                tape.watch(xr)
                zr = model(xr)
                if criterion.targeted:  # z_t - max other: < 0 until the target wins
                    diffs = -criterion.margin(zr, labels)
                else:
                    diffs = (tf.gather(zr, tf.reshape(others, [-1]), batch_dims=1)
                             - tf.gather(zr, tf.repeat(labels, k), batch_dims=1))
            grads, ok = clean_gradient(tape.gradient(diffs, xr, unconnected_gradients=tf.UnconnectedGradients.ZERO))
            usable = tf.logical_or(usable, tf.reduce_any(tf.reshape(ok, [-1, k]), axis=1))
            grads = tf.reshape(grads, [-1, k, 28, 28, 1])  # [B, k, 28, 28, 1]
            diffs = tf.reshape(diffs, [-1, k])
            done = tf.logical_or(done, criterion(zr[::k], labels))
            if tf.reduce_all(done):
                break
            f = tf.abs(diffs)  # [B, k]
            flat = tf.reshape(grads, [tf.shape(grads)[0], k, -1])
            if self.norm == "l2":
                size = tf.norm(flat, axis=-1)
            else:
                size = tf.reduce_sum(tf.abs(flat), axis=-1)
            best = tf.argmin(f / (size + 1e-8), axis=1)
            f_best = tf.gather(f, best, batch_dims=1)[:, None, None, None]
            w_best = tf.gather(grads, best, batch_dims=1)
            size_best = tf.gather(size, best, batch_dims=1)[:, None, None, None]
            if self.norm == "l2":
                step = (f_best + 1e-4) / (tf.square(size_best) + 1e-12) * w_best
            else:
                step = (f_best + 1e-4) / (size_best + 1e-12) * tf.sign(w_best)
            p_total = p_total + tf.where(done[:, None, None, None], tf.zeros_like(step), step)
            x = tf.where(done[:, None, None, None], x,
                         tf.clip_by_value(images + (1.0 + self.overshoot) * p_total, 0.0, 1.0))
        return x, usable

    def run(self, model, images, labels, seed=0, criterion=MISCLASSIFICATION, starting_points=None):
        return self.run_with_status(model, images, labels, seed, criterion, starting_points)[0]
