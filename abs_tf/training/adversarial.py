"""Adversarial examples for L-infinity adversarial training, built on cleverhans' attacks.

Two methods (both keep pixels in [0, 1] and the perturbation in the eps-ball):

* ``"pgd"`` -- Madry et al. (2018): cleverhans' ``projected_gradient_descent`` with a uniform
  random start in the eps-ball (``rand_init=True``), ``steps`` steps of ``step_size``.
  The MNIST challenge used eps 0.3, 40 steps of 0.01. Costs ``steps + 1`` gradient passes
  per example.
* ``"fgsm_rs"`` -- Wong, Rice & Kolter (2020), "Fast is better than free: revisiting
  adversarial training" (ICLR 2020, arXiv:2001.03994), MNIST setting: a uniform random start
  in [-eps, eps], then one cleverhans ``fast_gradient_method`` step of ``step_size``
  (alpha = 0.375 for eps = 0.3), projected back onto the eps-ball. Two gradient passes per
  example. The random start is drawn with a stateless RNG from the caller's seed.

No attack loop is written here: the gradient steps are cleverhans' (the project's PGD).
"""

from __future__ import annotations

import dataclasses

import numpy as np
import tensorflow as tf
from cleverhans.tf2.attacks.fast_gradient_method import fast_gradient_method
from cleverhans.tf2.attacks.projected_gradient_descent import projected_gradient_descent
from cleverhans.tf2.utils import clip_eta

METHODS = ("pgd", "fgsm_rs")


@dataclasses.dataclass(frozen=True)
class AdversarialConfig:
    """L-infinity adversarial training settings.

    method: ``"pgd"`` or ``"fgsm_rs"`` (see module docstring).
    eps: L-infinity radius, pixels in [0, 1] (0.3 for MNIST).
    step_size: PGD step (0.01 in the MNIST challenge) or the FGSM-RS alpha (0.375 in Wong et al.).
    steps: PGD steps (ignored by fgsm_rs).
    eps_warmup_steps: fgsm_rs only: eps (and alpha with it) grow linearly from eps/warmup to
      eps over the first this-many training steps (0: full eps from the start).
    """
    method: str = "fgsm_rs"
    eps: float = 0.3
    step_size: float = 0.375
    steps: int = 1
    eps_warmup_steps: int = 0

    def __post_init__(self):
        if self.method not in METHODS:
            raise ValueError(f"unknown adversarial training method {self.method!r}; choose one of {METHODS}")
        if not 0 < self.eps <= 1:
            raise ValueError(f"eps must be in (0, 1], got {self.eps}")
        if self.step_size <= 0:
            raise ValueError(f"step_size must be > 0, got {self.step_size}")
        if self.method == "pgd" and (self.steps < 1 or self.step_size > self.eps):
            raise ValueError(f"pgd needs steps >= 1 and step_size <= eps, got {self.steps}, {self.step_size}")
        if self.eps_warmup_steps < 0 or (self.eps_warmup_steps and self.method != "fgsm_rs"):
            raise ValueError(f"eps_warmup_steps must be >= 0 and is supported by fgsm_rs only, "
                             f"got {self.eps_warmup_steps} with {self.method}")

    def eps_at(self, step):
        """The eps of training step ``step`` (a scalar tensor): ``eps`` after the warm-up."""
        if not self.eps_warmup_steps:
            return tf.constant(self.eps, tf.float32)
        frac = tf.minimum(1.0, (tf.cast(step, tf.float32) + 1.0) / float(self.eps_warmup_steps))
        return self.eps * frac


def pgd_linf(model_fn, images, labels, *, eps: float, step_size: float, steps: int, rand_init: bool = True):
    """cleverhans' L-infinity PGD (untargeted, cross-entropy on the true labels).

    Args:
      model_fn: images [B,28,28,1] in [0,1] -> logits [B,10].
      images: float32 [B,28,28,1] in [0,1]; labels: int [B].
    Returns: adversarial images float32 [B,28,28,1] in [0,1], within eps of ``images``.
    The random start uses TF's global (stateful) RNG, as cleverhans does.
    """
    return projected_gradient_descent(
        model_fn, images, eps, step_size, steps, np.inf, clip_min=0.0, clip_max=1.0,
        y=labels, rand_init=rand_init, sanity_checks=False)  # cleverhans' sanity checks fail in graphs


def fgsm_random_start(model_fn, images, labels, *, eps: float, step_size: float, seed):
    """FGSM with a uniform random start (Wong et al. 2020), via cleverhans' FGM.

    Args:
      images: float32 [B,28,28,1] in [0,1]; labels: int [B]; seed: int32 [2] stateless seed.
    Returns: float32 [B,28,28,1] in [0,1] with ``|adv - images| <= eps``.
    """
    delta = tf.random.stateless_uniform(tf.shape(images), seed, -eps, eps, dtype=images.dtype)
    start = tf.clip_by_value(images + delta, 0.0, 1.0)
    stepped = fast_gradient_method(model_fn, start, step_size, np.inf, clip_min=0.0, clip_max=1.0, y=labels)
    return tf.clip_by_value(images + clip_eta(stepped - images, np.inf, eps), 0.0, 1.0)


def adversarial_batch(model_fn, images, labels, config: AdversarialConfig, seed, step=0):
    """Adversarial training inputs for one batch (training step ``step``) per ``config``."""
    if config.method == "pgd":
        return pgd_linf(model_fn, images, labels, eps=config.eps, step_size=config.step_size, steps=config.steps)
    eps = config.eps_at(step)
    return fgsm_random_start(model_fn, images, labels, eps=eps, step_size=config.step_size / config.eps * eps,
                             seed=seed)


def robust_accuracy(model_fn, images, labels, *, eps: float = 0.3, step_size: float = 0.01, steps: int = 40,
                    restarts: int = 1, batch_size: int = 500, seed: int = 0) -> float:
    """Accuracy under cleverhans' L-infinity PGD with random start, worst case over restarts.

    An image counts as robust if it is classified correctly on the clean input and after every
    restart (each restart runs only on the images still robust). Returns a fraction in [0, 1].
    """
    tf.random.set_seed(seed)
    attack = tf.function(
        lambda x, y: pgd_linf(model_fn, x, y, eps=eps, step_size=step_size, steps=steps),
        input_signature=[tf.TensorSpec([None, 28, 28, 1], tf.float32), tf.TensorSpec([None], tf.int64)])
    robust = []
    for i in range(0, len(images), batch_size):
        x = tf.convert_to_tensor(images[i:i + batch_size])
        y = tf.cast(labels[i:i + batch_size], tf.int64)
        ok = (tf.argmax(model_fn(x), axis=1) == y).numpy()
        for _ in range(restarts):
            idx = np.flatnonzero(ok)
            if len(idx) == 0:
                break
            adv = attack(tf.gather(x, idx), tf.gather(y, idx))
            still = (tf.argmax(model_fn(adv), axis=1) == tf.gather(y, idx)).numpy()
            ok[idx] = still
        robust.append(ok)
    return float(np.mean(np.concatenate(robust)))
