"""Gradient attacks after CleverHans 4: FGSM/FGM, BIM/PGD (L2, L∞), momentum iterative (MIM).

The iterative attacks are CleverHans' algorithms step for step (its `optimize_linear` and
`clip_eta`, in its order: step, clip to [0, 1], project, clip), written as a `tf.while_loop`
so that (a) the budget can be a tensor with one epsilon per image, (b) the graph is not
unrolled ``steps`` times (ABS runs a 50-step latent search per call), (c) the logits of the
gradient pass are reused to stop early per image. With ``early_stop=False``, no random start
and the cross-entropy loss the results equal CleverHans' functions up to float round-off
(tested). Random starts come from per-image streams (`abs_tf.attacks.randomness`), keyed by
the call's seed, the image's content and the restart number.

Loss (``loss=``): the logit margin by default (see `abs_tf.attacks.losses`: on ABS the
cross-entropy gradient is weak), or the cross-entropy; maximised.
Step sizes are relative to epsilon (foolbox's ``rel_stepsize``): step = rel_stepsize * eps.
"""

from __future__ import annotations

import tensorflow as tf
from cleverhans.tf2.utils import clip_eta, optimize_linear

from abs_tf.attacks import randomness
from abs_tf.attacks.base import FixedEpsilonAttack
from abs_tf.attacks.criteria import MISCLASSIFICATION
from abs_tf.attacks.losses import DEFAULT_LOSS, check_loss, loss_and_gradient
from abs_tf.attacks.verify import check_norm

ORDERS = {"l2": 2, "linf": float("inf")}


def as_order(norm: str):
    """"l2" -> 2, "linf" -> inf (CleverHans' ``norm`` argument)."""
    check_norm(norm)
    if norm not in ORDERS:
        raise ValueError(f"gradient attacks support norms {tuple(ORDERS)}, got {norm!r}")
    return ORDERS[norm]


class FGM(FixedEpsilonAttack):
    """Fast gradient method (Goodfellow et al. 2015, https://arxiv.org/abs/1412.6572).

    One step x + eps * d, d = sign(grad) for L∞ (FGSM) or grad / ||grad||_2 for L2, clipped to
    [0, 1]. `minimize` searches along d with one gradient per image (see `direction`).

    Args:
      norm: "l2" (default) or "linf".
      loss: "margin" (default) or "crossentropy".
    """

    def __init__(self, *, norm: str = "l2", loss: str = DEFAULT_LOSS):
        as_order(norm)
        self._store(norm=norm, loss=check_loss(loss))

    def direction(self, model, images, labels, seed=0, criterion=MISCLASSIFICATION):
        """(unit direction d [B, 28, 28, 1] (||d||_norm = 1, or 0 without gradient), usable bool [B])."""
        del seed  # deterministic
        _, grad, usable = loss_and_gradient(model, images, labels, self.loss, criterion)
        return optimize_linear(grad, 1.0, as_order(self.norm)), usable

    def run_with_status(self, model, images, labels, epsilon, seed=0, criterion=MISCLASSIFICATION):
        d, usable = self.direction(model, images, labels, seed, criterion)
        return tf.clip_by_value(images + tf.reshape(epsilon, [-1, 1, 1, 1]) * d, 0.0, 1.0), usable

    def run(self, model, images, labels, epsilon, seed=0, criterion=MISCLASSIFICATION):
        return self.run_with_status(model, images, labels, epsilon, seed, criterion)[0]


class FGSM(FGM):
    """Fast gradient sign method: `FGM` with norm "linf"."""

    def __init__(self, *, loss: str = DEFAULT_LOSS):
        self._store(loss=check_loss(loss))
        self.norm = "linf"


class PGD(FixedEpsilonAttack):
    """Projected gradient descent (Madry et al. 2018, https://arxiv.org/abs/1706.06083).

    Args:
      norm: "linf" (default) or "l2".
      steps: gradient steps (default 40 for L∞, 50 for L2, as foolbox).
      rel_stepsize: step size / epsilon (default 0.1: a path of 4-5 epsilon). Foolbox's 0.01/0.3
        (L∞) and 0.025 (L2) cannot cross the ball from a random start: in 784 dimensions the
        start lies on the sphere (L2) or at a random corner (L∞), up to 2 epsilon away from
        the optimum, and on the known-answer polytope they end 24-78 % above the minimum
        (tests/attacks/test_attacks_known_answers.py); with 0.1 within 1 %.
      random_start: start uniformly at random in the epsilon-ball (per-image seeded streams).
      restarts: independent random starts (>= 1); an image keeps the first adversarial found
        (each restart costs ``steps`` gradients + 1 forward query per image).
      early_stop: freeze an image at its first iterate that the model misclassifies (the
        logits come free with the gradient); stop when all are adversarial.
      loss: "margin" (default) or "crossentropy".
    """

    _DEFAULTS = {"linf": (40, 0.1), "l2": (50, 0.1)}
    _RANDOM_START = True
    decay_factor = None  # momentum (MIM) off

    def __init__(self, *, norm: str = "linf", steps=None, rel_stepsize=None, random_start=None, restarts: int = 1,
                 early_stop: bool = True, loss: str = DEFAULT_LOSS):
        as_order(norm)
        default_steps, default_rel = self._DEFAULTS[norm]
        self._store(norm=norm, steps=int(steps if steps is not None else default_steps),
                    rel_stepsize=float(rel_stepsize if rel_stepsize is not None else default_rel),
                    random_start=bool(self._RANDOM_START if random_start is None else random_start),
                    restarts=int(restarts), early_stop=bool(early_stop), loss=check_loss(loss))
        if self.steps < 1 or self.rel_stepsize <= 0 or self.restarts < 1:
            raise ValueError(f"{self!r}: steps and restarts must be >= 1 and rel_stepsize > 0")
        if self.restarts > 1 and not self.random_start:
            raise ValueError(f"{self!r}: restarts without random_start repeat the same run")

    def _descend(self, model, images, labels, eps, keys, stream, criterion):
        """One PGD run from a (seeded) random start: (iterate [B, ...], usable bool [B])."""
        order = as_order(self.norm)
        step = self.rel_stepsize * eps
        if self.random_start:
            eta = randomness.uniform_ball(keys, self.norm, stream) * eps
            x = tf.clip_by_value(images + clip_eta(eta, order, eps), 0.0, 1.0)
        else:
            x = images
        done = tf.zeros(tf.shape(images)[:1], tf.bool)
        usable = tf.zeros(tf.shape(images)[:1], tf.bool)
        momentum = tf.zeros_like(images)
        for _ in tf.range(self.steps):
            logits, grad, ok = loss_and_gradient(model, x, labels, self.loss, criterion)
            usable = tf.logical_or(usable, ok)
            if self.early_stop:
                done = tf.logical_or(done, criterion(logits, labels))
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
        return x, usable

    def run_with_status(self, model, images, labels, epsilon, seed=0, criterion=MISCLASSIFICATION):
        eps = tf.reshape(epsilon, [-1, 1, 1, 1])
        keys = randomness.image_keys(images, seed)
        x, usable = self._descend(model, images, labels, eps, keys, 0, criterion)
        if self.restarts == 1:
            return x, usable
        found = criterion(model(x), labels)
        for restart in tf.range(1, self.restarts):
            if tf.reduce_all(found):
                break
            x_r, usable_r = self._descend(model, images, labels, eps, keys, restart, criterion)
            adversarial = criterion(model(x_r), labels)
            take = tf.logical_and(adversarial, tf.logical_not(found))
            x = tf.where(take[:, None, None, None], x_r, x)
            found = tf.logical_or(found, adversarial)
            usable = tf.logical_or(usable, usable_r)
        return x, usable

    def run(self, model, images, labels, epsilon, seed=0, criterion=MISCLASSIFICATION):
        """Candidates [B, 28, 28, 1] (see `FixedEpsilonAttack.run`); usable inside a tf.function
        (adversarial training calls it directly)."""
        return self.run_with_status(model, images, labels, epsilon, seed, criterion)[0]


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
                 random_start=None, restarts: int = 1, early_stop: bool = True, loss: str = DEFAULT_LOSS):
        super().__init__(norm=norm, steps=steps, rel_stepsize=rel_stepsize, random_start=random_start,
                         restarts=restarts, early_stop=early_stop, loss=loss)
        self._params["decay_factor"] = float(decay_factor)
        self.decay_factor = float(decay_factor)
