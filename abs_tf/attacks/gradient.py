"""Gradient attacks from CleverHans 4: FGSM/FGM, BIM/PGD (L2, L∞), momentum iterative (MIM).

FGM calls ``cleverhans.tf2.attacks.fast_gradient_method`` directly. The iterative attacks
are CleverHans' algorithms step for step (its `optimize_linear`, `clip_eta` and
`random_lp_vector`, in its order: step, clip to [0, 1], project, clip), re-written as a
`tf.while_loop` so that (a) the budget can be a tensor with one epsilon per image (CleverHans'
``assert eps_iter <= eps`` needs Python floats), (b) the graph is not unrolled ``steps``
times (ABS runs a 50-step latent search per call), (c) the logits of the gradient pass are
reused to stop early per image. With ``early_stop=False`` the results equal CleverHans'
functions up to float round-off of the loss gradient (tested).

Loss (``loss=``): softmax cross-entropy of the true label (CleverHans' default; computed in
a form whose gradient survives confident models) or the logit margin (see
`base.attack_loss`), maximised.
Step sizes are relative to epsilon (foolbox's ``rel_stepsize``): step = rel_stepsize * eps.
"""

from __future__ import annotations

import tensorflow as tf
from cleverhans.tf2.attacks.fast_gradient_method import fast_gradient_method
from cleverhans.tf2.utils import clip_eta, optimize_linear, random_lp_vector

from abs_tf.attacks.base import FixedEpsilonAttack, as_order, attack_loss, loss_and_gradient


class FGM(FixedEpsilonAttack):
    """Fast gradient method (Goodfellow et al. 2015, https://arxiv.org/abs/1412.6572).

    One step x + eps * d, d = sign(grad) for L∞ (FGSM) or grad / ||grad||_2 for L2, clipped to
    [0, 1]. `minimize` searches along d with one gradient per image (see `direction`).

    Args:
      norm: "l2" (default) or "linf".
      loss: "crossentropy" (default) or "margin".
    """

    def __init__(self, *, norm: str = "l2", loss: str = "crossentropy"):
        as_order(norm)
        attack_loss(loss)
        self._store(norm=norm, loss=loss)

    def run(self, model, images, labels, epsilon):
        eps = tf.reshape(epsilon, [-1, 1, 1, 1])
        return fast_gradient_method(model, images, eps, as_order(self.norm), loss_fn=attack_loss(self.loss),
                                    clip_min=0.0, clip_max=1.0, y=labels)

    def direction(self, model, images, labels):
        """Unit direction d [B, 28, 28, 1] (||d||_norm = 1, or 0 for a zero gradient)."""
        _, grad = loss_and_gradient(model, images, labels, self.loss)
        return optimize_linear(grad, 1.0, as_order(self.norm))


class FGSM(FGM):
    """Fast gradient sign method: `FGM` with norm "linf"."""

    def __init__(self, *, loss: str = "crossentropy"):
        attack_loss(loss)
        self._store(loss=loss)
        self.norm = "linf"


class PGD(FixedEpsilonAttack):
    """Projected gradient descent (Madry et al. 2018, https://arxiv.org/abs/1706.06083).

    Args:
      norm: "linf" (default) or "l2".
      steps: gradient steps (default 40 for L∞, 50 for L2, as foolbox).
      rel_stepsize: step size / epsilon (default 0.01/0.3 for L∞, 0.025 for L2, as foolbox).
      random_start: start uniformly at random in the epsilon-ball (CleverHans' sampler).
      early_stop: freeze an image at its first iterate that the model misclassifies (the
        logits come free with the gradient); stop when all are adversarial.
      loss: "crossentropy" (default) or "margin".
    """

    _DEFAULTS = {"linf": (40, 0.01 / 0.3), "l2": (50, 0.025)}
    _RANDOM_START = True

    def __init__(self, *, norm: str = "linf", steps=None, rel_stepsize=None, random_start=None,
                 early_stop: bool = True, loss: str = "crossentropy"):
        as_order(norm)
        attack_loss(loss)
        default_steps, default_rel = self._DEFAULTS[norm]
        self._store(norm=norm, steps=int(steps if steps is not None else default_steps),
                    rel_stepsize=float(rel_stepsize if rel_stepsize is not None else default_rel),
                    random_start=bool(self._RANDOM_START if random_start is None else random_start),
                    early_stop=bool(early_stop), loss=loss)
        if self.steps < 1 or self.rel_stepsize <= 0:
            raise ValueError(f"{self!r}: steps must be >= 1 and rel_stepsize > 0")

    decay_factor = None  # momentum (MIM) off

    def run(self, model, images, labels, epsilon):
        order = as_order(self.norm)
        eps = tf.reshape(epsilon, [-1, 1, 1, 1])
        step = self.rel_stepsize * eps
        if self.random_start:
            eta = random_lp_vector(tf.shape(images), order, 1.0) * eps
            x = tf.clip_by_value(images + clip_eta(eta, order, eps), 0.0, 1.0)
        else:
            x = images
        done = tf.zeros(tf.shape(images)[:1], tf.bool)
        momentum = tf.zeros_like(images)
        for _ in tf.range(self.steps):
            logits, grad = loss_and_gradient(model, x, labels, self.loss)
            if self.early_stop:
                done = tf.logical_or(done, tf.not_equal(tf.argmax(logits, -1), labels))
                if tf.reduce_all(done):
                    break
            if self.decay_factor is not None:
                grad = grad / tf.maximum(1e-12, tf.reduce_mean(tf.abs(grad), [1, 2, 3], keepdims=True))
                momentum = self.decay_factor * momentum + grad
                grad = momentum
            x_new = x + optimize_linear(grad, step, order)
            if self.decay_factor is None:  # CleverHans' PGD clips before projecting, its MIM not
                x_new = tf.clip_by_value(x_new, 0.0, 1.0)
            x_new = tf.clip_by_value(images + clip_eta(x_new - images, order, eps), 0.0, 1.0)
            x = tf.where(done[:, None, None, None], x, x_new)
        return x


class BIM(PGD):
    """Basic iterative method (Kurakin et al. 2016, https://arxiv.org/abs/1607.02533):
    `PGD` without random start; defaults 10 steps of 0.2 eps (L∞) / 0.2 eps (L2), as foolbox."""

    _DEFAULTS = {"linf": (10, 0.2), "l2": (10, 0.2)}
    _RANDOM_START = False


class MIM(PGD):
    """Momentum iterative method (Dong et al. 2018, https://arxiv.org/abs/1710.06081).

    CleverHans' update: g <- grad / mean|grad|; m <- decay * m + g; x <- x + step * sign(m)
    (L∞) or step * m/||m|| (L2); project; clip. Defaults as CleverHans: 10 steps of 0.2 eps
    (its 0.06 for eps 0.3), decay 1.0, no random start.

    Args: as `PGD`, plus decay_factor.
    """

    _DEFAULTS = {"linf": (10, 0.2), "l2": (10, 0.2)}
    _RANDOM_START = False

    def __init__(self, *, norm: str = "linf", steps=None, rel_stepsize=None, decay_factor: float = 1.0,
                 random_start=None, early_stop: bool = True, loss: str = "crossentropy"):
        super().__init__(norm=norm, steps=steps, rel_stepsize=rel_stepsize, random_start=random_start,
                         early_stop=early_stop, loss=loss)
        self._params["decay_factor"] = float(decay_factor)
        self.decay_factor = float(decay_factor)
