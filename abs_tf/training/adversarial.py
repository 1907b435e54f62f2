"""L-infinity adversarial training (Madry et al. 2018) and its robust-accuracy figures, with the
attack library's PGD (`abs_tf.attacks.PGD`): the same attack that evaluates the models trains them.

Training: each batch is replaced by PGD adversarials (uniform random start in the eps-ball,
``steps`` steps of ``step_size``, no early stop), computed with the model in inference mode.
The MNIST challenge used eps 0.3, 40 steps of 0.01; the shipped `weights/madry` used 4 steps of
0.1, then 8 of 0.05 (see its PROVENANCE.md).

Evaluation: `robust_accuracy` calls the attack and counts the images its verifier
(`abs_tf.attacks.verify`) does not confirm as adversarial. The random starts of both are
functions of a seed and the image (never TF's global RNG).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import tensorflow as tf

if TYPE_CHECKING:
    from abs_tf import attacks


def pgd(eps: float, step_size: float, steps: int, restarts: int = 1) -> "attacks.PGD":
    """The L-infinity PGD of Madry et al.: random start, ``steps`` steps of ``step_size``
    (pixels) on the cross-entropy of the true label, no early stop (every image gets all the
    steps, as in training); ``restarts`` independent random starts."""
    from abs_tf import attacks  # only runs that attack import the attack library

    if not 0 < step_size <= eps:
        raise ValueError(f"PGD needs 0 < step_size <= eps, got step_size={step_size}, eps={eps}")
    return attacks.PGD(norm="linf", steps=steps, rel_stepsize=step_size / eps, random_start=True,
                       restarts=restarts, early_stop=False, loss="crossentropy")


def adversarial_batch(attack, model, images, labels, eps: float, seed):
    """Adversarial training inputs for one batch; usable inside the training `tf.function`.

    Args:
      attack: from `pgd`. model: images -> logits [B,10] (called in inference mode).
      images: float32 [B,28,28,1] in [0,1]; labels: int [B]; eps: L-infinity radius.
      seed: int scalar (tensor or Python int): the random starts are a function of it and of
        each image (`abs_tf.attacks.randomness`), so they follow the run's (seed, step).
    Returns: float32 [B,28,28,1] in [0,1] with ``|adv - images| <= eps``.
    """
    epsilon = tf.fill(tf.shape(images)[:1], tf.constant(eps, tf.float32))
    return attack.run(model, images, tf.cast(labels, tf.int64), epsilon, seed=seed)


def robust_accuracy(model, images, labels, *, eps: float = 0.3, step_size: float = 0.01, steps: int = 40,
                    restarts: int = 1, seed: int = 0, batch_size: int = 500) -> float:
    """Accuracy under PGD with random start, worst case over ``restarts`` (the challenge's
    evaluation: eps 0.3, 40 steps of 0.01).

    An image counts as robust if the attack's verifier finds no adversarial for it (which
    requires it to be classified correctly) at any restart (`abs_tf.attacks.AttackResult.robust`).
    Images float32 [N,28,28,1] in [0,1], labels int [N]. Returns a fraction in [0, 1]; the
    same ``seed`` gives the same figure.
    """
    attack = pgd(eps, step_size, steps, restarts)
    images, labels = np.asarray(images, np.float32), np.asarray(labels, np.int64)
    robust = [attack(model, images[i:i + batch_size], labels[i:i + batch_size], epsilons=[eps], seed=seed).robust[0]
              for i in range(0, len(images), batch_size)]
    return float(np.mean(np.concatenate(robust)))
