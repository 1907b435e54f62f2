"""SPSA (Uesato et al. 2018, https://arxiv.org/abs/1802.05666), L∞, gradient-free; batched.

The algorithm of CleverHans 4's ``spsa`` (uniform random start in the epsilon-ball; per step an
SPSA estimate of the gradient of the margin loss from ``samples`` mirrored Rademacher probes
x ± delta v, an Adam step, projection onto the ball and [0, 1]; an image stops once its
margin is < 0), rewritten because CleverHans' version (a) evaluates probes outside [0, 1],
which every model of the project rejects (their input check), (b) draws from TF's global RNG,
and (c) runs one image at a time. Here

* probes are clipped to [0, 1]; each pixel's estimate is normalised by its realised probe
  difference ``g_j = Σ_n s_n v_nj / Σ_n (x+_n - x-_n)_j v_nj`` (for unclipped probes the usual
  ``mean(s v) / (2 delta)``), so clipped pixels are not shrunk;
* probe directions and the random start come from per-image streams (seed, image content,
  step), so a result does not depend on which images share the batch;
* all images are attacked together; probes are evaluated ``batch_size`` images per call.

Cost per step: ``samples`` probe queries (+1 forward for the early-stop check) per image.
"""

from __future__ import annotations

import tensorflow as tf

from abs_tf.attacks import randomness
from abs_tf.attacks.base import FixedEpsilonAttack
from abs_tf.attacks.criteria import MISCLASSIFICATION
from abs_tf.attacks.estimation import evaluate_in_chunks


class SPSA(FixedEpsilonAttack):
    """SPSA, L∞: the criterion's margin is minimised with Adam on SPSA gradient estimates.

    Args:
      steps: optimisation steps (CleverHans ``nb_iter``; default 100).
      learning_rate: Adam step (default 0.01). delta: probe size (default 0.01).
      samples: probes per gradient estimate (even: samples / 2 mirrored pairs; default 128).
      early_stop: stop an image as soon as its margin is < 0 (adversarial).
      batch_size: probe images per model call (default 4096).
    """

    norm = "linf"

    def __init__(self, *, steps: int = 100, learning_rate: float = 0.01, delta: float = 0.01,
                 samples: int = 128, early_stop: bool = True, batch_size: int = 4096):
        if steps < 1 or samples < 2 or samples % 2 or delta <= 0 or learning_rate <= 0 or batch_size < 1:
            raise ValueError("SPSA needs steps >= 1, an even samples >= 2, delta > 0, learning_rate > 0, "
                             "batch_size >= 1")
        self._store(steps=int(steps), learning_rate=float(learning_rate), delta=float(delta),
                    samples=int(samples), early_stop=bool(early_stop), batch_size=int(batch_size))

    def _gradient(self, model, x, labels, keys, step, criterion):
        """SPSA estimate [B, 28, 28, 1] of the margin's input gradient at x (probes in [0, 1])."""
        pairs = self.samples // 2
        v = randomness.rademacher(keys, [pairs, 28, 28, 1], step + 1)           # [B, P, 28, 28, 1]
        plus = tf.clip_by_value(x[:, None] + self.delta * v, 0.0, 1.0)
        minus = tf.clip_by_value(x[:, None] - self.delta * v, 0.0, 1.0)
        probes = tf.reshape(tf.concat([plus, minus], 1), [-1, 28, 28, 1])       # image b's probes together
        logits = evaluate_in_chunks(model, probes, self.batch_size)
        repeated = tf.repeat(labels, self.samples)
        margins = tf.reshape(criterion.margin(logits, repeated), [-1, 2, pairs])
        s = (margins[:, 0] - margins[:, 1])[:, :, None, None, None]            # [B, P, 1, 1, 1]
        realised = tf.reduce_sum((plus - minus) * v, axis=1)                    # >= 0
        return tf.math.divide_no_nan(tf.reduce_sum(s * v, axis=1), realised)

    def run(self, model, images, labels, epsilon, seed=0, criterion=MISCLASSIFICATION):
        eps = tf.reshape(epsilon, [-1, 1, 1, 1])
        keys = randomness.image_keys(images, seed)
        start = (2.0 * randomness.uniform(keys, [28, 28, 1], 0) - 1.0) * eps
        perturbation = tf.clip_by_value(images + start, 0.0, 1.0) - images
        m = tf.zeros_like(images)
        v = tf.zeros_like(images)
        done = tf.zeros(tf.shape(images)[:1], tf.bool)
        beta1, beta2, adam_eps = 0.9, 0.999, 1e-7
        for step in tf.range(self.steps):
            if self.early_stop:
                done = tf.logical_or(done, criterion.margin(model(images + perturbation), labels) < 0.0)
                if tf.reduce_all(done):
                    break
            grad = self._gradient(model, images + perturbation, labels, keys, tf.cast(step, tf.int64), criterion)
            t = tf.cast(step + 1, tf.float32)
            m = beta1 * m + (1 - beta1) * grad
            v = beta2 * v + (1 - beta2) * tf.square(grad)
            update = self.learning_rate * (m / (1 - beta1 ** t)) / (tf.sqrt(v / (1 - beta2 ** t)) + adam_eps)
            new = tf.clip_by_value(perturbation - update, -eps, eps)
            new = tf.clip_by_value(images + new, 0.0, 1.0) - images
            perturbation = tf.where(done[:, None, None, None], perturbation, new)
        return images + perturbation
