"""Input preprocessing that is part of a model, defined once: binarization at 0.5.

A model whose decision starts with a preprocessing step declares it, so that attacks can
differentiate the model *behind* it (straight-through / BPDA) instead of reading the zero
gradient of the step function as robustness. The protocol (duck-typed; see
`front_end` and `logits_after_front_end`):

    model.preprocessing                      # None, or a `Preprocessing` (e.g. BINARIZE)
    model.logits_after_preprocessing(x)      # logits of already-preprocessed images x

so that ``model(x) == model.logits_after_preprocessing(model.preprocessing(x))``.
"""

from __future__ import annotations

import dataclasses
from typing import Callable

import tensorflow as tf

BINARIZE_THRESHOLD = 0.5


def binarize(images) -> tf.Tensor:
    """Pixels ``>= 0.5`` -> 1.0, others -> 0.0: float32, same shape. Its true input gradient
    is zero almost everywhere (TF returns None for the comparison)."""
    images = tf.convert_to_tensor(images, tf.float32)
    return tf.cast(images >= BINARIZE_THRESHOLD, tf.float32)


@dataclasses.dataclass(frozen=True)
class Preprocessing:
    """A named, non-differentiable map images [B,28,28,1] in [0,1] -> same shape in [0,1]."""
    name: str
    fn: Callable

    def __call__(self, images) -> tf.Tensor:
        return self.fn(images)


BINARIZE = Preprocessing("binarize", binarize)


def front_end(model):
    """The model's declared preprocessing (a `Preprocessing`), or None."""
    return getattr(model, "preprocessing", None)


def logits_after_front_end(model):
    """``images -> logits`` of the model behind its front end (the model itself if it has none)."""
    if front_end(model) is None:
        return model
    return model.logits_after_preprocessing


def straight_through(preprocessing: Preprocessing, images) -> tf.Tensor:
    """``preprocessing(images)`` in the forward pass, the identity in the backward pass (BPDA).

    For models whose own call differentiates through their front end on purpose (ABS: the
    envelope gradient of Binary ABS w.r.t. the binarized input is passed to the raw input)."""
    @tf.custom_gradient
    def forward(x):
        return preprocessing(x), lambda upstream: upstream

    return forward(tf.convert_to_tensor(images, tf.float32))
