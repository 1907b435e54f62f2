"""Seeds: the one function that touches process-wide random state, and the seeds derived from it.

Training randomness is a function of (seed, epoch, step) only, so that a fixed seed gives
identical weights and an interrupted run resumes byte-identically:

* batch order: `abs_tf.training.loop.epoch_batches` (numpy, from (seed, epoch));
* augmentation and the VAE's reparameterisation: stateless TF ops seeded with `step_seed`;
* Keras weight initialisation draws from the process-wide RNGs: `seed_globals` seeds them. It
  is called at the entry of every training run (`abs_tf.training.run`), visibly, and nowhere
  inside the trainers;
* PGD's random start (adversarial training) is a function of a seed derived from `step_seed`
  and of each image (`abs_tf.attacks.randomness`).
"""

from __future__ import annotations

import keras
import tensorflow as tf


def seed_globals(seed: int) -> None:
    """Seeds Python's, numpy's and TF's global RNGs (Keras initialisers draw from them) and makes
    TF ops deterministic. The only place of the library that sets process-wide random state."""
    keras.utils.set_random_seed(int(seed))
    tf.config.experimental.enable_op_determinism()


def step_seed(seed: int, step) -> tf.Tensor:
    """A stateless-RNG seed (int32 [2]) for global step ``step`` of a run with ``seed``."""
    return tf.stack([tf.constant(seed, tf.int32), tf.cast(step, tf.int32)])
