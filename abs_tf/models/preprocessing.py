"""Input preprocessing that is part of a model, defined once: binarization at 0.5.

A model whose decision starts with a preprocessing step declares it, so that attacks can
differentiate the model *behind* it (straight-through / BPDA) instead of reading the zero
gradient of the step function as robustness. The protocol (duck-typed; see
`front_end` and `logits_after_front_end`):

    model.preprocessing                      # None, or a `Preprocessing` (e.g. BINARIZE)
    model.logits_after_preprocessing(x)      # logits of already-preprocessed images x

so that ``model(x) == model.logits_after_preprocessing(model.preprocessing(x))``.

A front end whose output depends on each pixel only through a threshold also says which input
closest to an image maps where a candidate maps (`Preprocessing.nearest_preimage`): the
decision of the model cannot tell the two apart, every pixel's change shrinks, so an adversarial
of a binarizing model is worth storing only in that form (`abs_tf.attacks` verifies every
candidate that way; without it a binarized model looks twice as robust in L2 as it is).
"""

from __future__ import annotations

import dataclasses
from typing import Callable, Optional

import numpy as np
import tensorflow as tf

BINARIZE_THRESHOLD = 0.5


def binarize(images) -> tf.Tensor:
    """Pixels ``>= 0.5`` -> 1.0, others -> 0.0: float32, same shape. Its true input gradient
    is zero almost everywhere (TF returns None for the comparison)."""
    images = tf.convert_to_tensor(images, tf.float32)
    return tf.cast(images >= BINARIZE_THRESHOLD, tf.float32)


# float32 just below the threshold: the largest value binarize maps to 0
_BELOW_THRESHOLD = np.nextafter(np.float32(BINARIZE_THRESHOLD), np.float32(0.0))


def binarize_nearest_preimage(originals, candidates) -> np.ndarray:
    """The images closest to ``originals``, pixel by pixel, that binarize like ``candidates``.

    A pixel whose binarized value the candidate keeps stays at its original value; one the
    candidate flips goes just across the threshold on the candidate's side (0.5 upward, the
    float32 below 0.5 downward). No pixel moves further than in the candidate, so every norm of
    the perturbation is at most the candidate's, and ``binarize`` of the result equals
    ``binarize(candidates)``. Rows with NaN/Inf are returned unchanged (the verifier rejects
    them). numpy float32 [B, 28, 28, 1] (any equal shapes) in [0, 1].
    """
    x = np.asarray(originals, np.float32)
    c = np.asarray(candidates, np.float32)
    if x.shape != c.shape:
        raise ValueError(f"originals and candidates must have one shape, got {x.shape} and {c.shape}")
    up = c >= BINARIZE_THRESHOLD
    flipped = up != (x >= BINARIZE_THRESHOLD)
    out = np.where(flipped, np.where(up, np.float32(BINARIZE_THRESHOLD), _BELOW_THRESHOLD), x).astype(np.float32)
    finite = np.isfinite(c.reshape(c.shape[0], -1)).all(axis=1) if c.ndim > 1 else np.isfinite(c)
    out[~finite] = c[~finite]
    return out


@dataclasses.dataclass(frozen=True)
class Preprocessing:
    """A named, non-differentiable map images [B,28,28,1] in [0,1] -> same shape in [0,1].

    nearest_preimage: optional ``(originals, candidates) -> images`` (numpy): per image the input
    closest to the original that the map sends where it sends the candidate, no pixel moving
    further than in the candidate (module doc); None when the map offers none."""
    name: str
    fn: Callable
    nearest_preimage: Optional[Callable] = None

    def __call__(self, images) -> tf.Tensor:
        return self.fn(images)


BINARIZE = Preprocessing("binarize", binarize, binarize_nearest_preimage)
BY_NAME = {BINARIZE.name: BINARIZE}


def front_end(model):
    """The model's declared preprocessing (a `Preprocessing`), or None."""
    return getattr(model, "preprocessing", None)


def decision_front_end(model):
    """The preprocessing in front of the decision ``model`` makes: its own (`front_end`), or
    that of the model an attack wrapper holds (`abs_tf.attacks.StraightThrough` declares it as
    ``decision_preprocessing``; `EstimatedGradients` and others keep the wrapped ``model``)."""
    seen = 0
    while model is not None and seen < 8:  # wrappers of wrappers, never a cycle
        declared = getattr(model, "decision_preprocessing", None) or front_end(model)
        if declared is not None:
            return declared
        model, seen = getattr(model, "model", None), seen + 1
    return None


def nearest_preimage_of(model):
    """``(originals, candidates) -> images`` of `decision_front_end`, or None (module doc)."""
    declared = decision_front_end(model)
    return getattr(declared, "nearest_preimage", None)


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
