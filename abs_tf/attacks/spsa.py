"""SPSA (Uesato et al. 2018, https://arxiv.org/abs/1802.05666): CleverHans 4's code through a
small Keras 3 compatibility layer.

CleverHans' `spsa()` fails under Keras 3 only because its optimizer `SPSAAdam` subclasses
``tf.optimizers.Adam`` and calls ``super().__init__(lr=...)`` (Keras 3 rejects ``lr``:
"Argument(s) not recognized"). Its algorithm uses nothing of the Keras optimizer except the
attributes ``beta_1``, ``beta_2``, ``epsilon`` and ``lr``. `_SPSAAdamKeras3` overrides only
``__init__`` (Keras 3 constructor with ``learning_rate``, then CleverHans' own fields); the
gradient estimate, the Adam update and the projected optimisation loop are CleverHans'
(`SPSAAdam._compute_gradients`, `._apply_gradients`, `projected_optimization`,
`margin_logit_loss`), unchanged. CleverHans' SPSA takes one image at a time; `SPSA.run` maps
it over the batch inside one graph.
"""

from __future__ import annotations

import keras
import tensorflow as tf
from cleverhans.tf2.attacks.spsa import SPSAAdam, margin_logit_loss, projected_optimization

from abs_tf.attacks.base import FixedEpsilonAttack


class _SPSAAdamKeras3(SPSAAdam):
    """CleverHans' `SPSAAdam` with a Keras 3 compatible constructor (same arguments)."""

    def __init__(self, lr=0.01, delta=0.01, num_samples=128, num_iters=1, compare_to_analytic_grad=False):
        keras.optimizers.Adam.__init__(self, learning_rate=lr)
        if num_samples % 2:
            raise ValueError("number of samples must be even")
        self.lr = lr
        self._delta = delta
        self._num_samples = num_samples // 2  # mirrored +/- delta
        self._num_iters = num_iters
        self._compare_to_analytic_grad = compare_to_analytic_grad


class SPSA(FixedEpsilonAttack):
    """SPSA, L∞, gradient-free: the margin loss is minimised with Adam on SPSA estimates.

    Args:
      steps: optimisation steps (CleverHans ``nb_iter``; default 100).
      learning_rate: Adam step (default 0.01). delta: SPSA probe size (default 0.01).
      samples: model evaluations per gradient estimate (even; default 128).
      iters: estimates averaged per step (default 1).
      early_stop: stop an image as soon as its margin loss is < 0 (adversarial).
    Cost per step: samples x iters (+1 with early_stop) queries per image.
    """

    norm = "linf"

    def __init__(self, *, steps: int = 100, learning_rate: float = 0.01, delta: float = 0.01,
                 samples: int = 128, iters: int = 1, early_stop: bool = True):
        if steps < 1 or samples < 2 or samples % 2 or iters < 1:
            raise ValueError("SPSA needs steps >= 1, an even samples >= 2, iters >= 1")
        self._store(steps=int(steps), learning_rate=float(learning_rate), delta=float(delta),
                    samples=int(samples), iters=int(iters), early_stop=bool(early_stop))
        self._optimizer = None

    def run(self, model, images, labels, epsilon):
        if self._optimizer is None:
            with tf.init_scope():
                self._optimizer = _SPSAAdamKeras3(lr=self.learning_rate, delta=self.delta,
                                                  num_samples=self.samples, num_iters=self.iters)
        optimizer = self._optimizer

        def loss_fn(x, label):  # CleverHans spsa(): untargeted margin loss, minimised
            logits = model(x)
            return -margin_logit_loss(logits, label, nb_classes=logits.get_shape()[-1])

        def one(args):
            x, y, eps = args
            adv = projected_optimization(
                loss_fn, x[None], y[None], eps, self.steps, optimizer, clip_min=0.0, clip_max=1.0,
                early_stop_loss_threshold=0.0 if self.early_stop else None)
            return adv[0]

        return tf.map_fn(one, (images, labels, epsilon), fn_output_signature=tf.float32)
