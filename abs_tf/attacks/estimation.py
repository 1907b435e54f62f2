"""Models with substitute gradients, so every gradient attack runs on them unchanged.

`EstimatedGradients(model)`: forward = ``model``; backward = an estimate from model queries
only, via `tf.custom_gradient` (for ABS, whose latent search gives no usable gradient, and
binarized models). For upstream weights u [B, C] the vector-Jacobian product
g = ∇_x (u · logits(x)) is estimated per image as

* ``"gaussian"`` (antithetic, the paper's unbiased alternative): N directions v_n ~ N(0, I)
  (per-image streams keyed by ``seed`` and the image's content: `abs_tf.attacks.randomness`);
  probes x_n± = clip(x ± sigma v_n, 0, 1); s_n = u · (logits(x_n+) - logits(x_n-));
  ``g_j = Σ_n s_n v_nj / Σ_n (x_n+ - x_n-)_j v_nj`` — for unclipped probes this is the usual
  ``Σ_n s_n v_n / (2 sigma Σ_n v_nj²)``; normalising by the realised probe difference keeps
  it consistent (no shrinkage) also for pixels clipped at 0 or 1 (most of MNIST).
* ``"coordinates"`` (the original ABS evaluation): central differences per pixel,
  ``g_j = (s(x + h e_j) - s(x - h e_j)) / ((x + h e_j)_j - (x - h e_j)_j)`` with clipped probes;
  784 x 2 queries per image, exact for linear models.

Probes are clipped to [0, 1] because the project's models check their input range.
``queries_per_gradient`` tells `CountingModel` what a gradient costs. Probes are evaluated in
chunks of ``batch_size`` images (`evaluate_in_chunks`).

`StraightThrough(model)`: BPDA (Athalye et al. 2018) for a model that declares a
non-differentiable front end (`abs_tf.models.preprocessing`: ``model.preprocessing``, e.g.
binarization, and ``model.logits_after_preprocessing``): forward = the model's own decision
``logits_after_preprocessing(preprocessing(x))`` (= ``model(x)``), backward = the gradient of
the network behind the front end, passed through the front end as if it were the identity.
"""

from __future__ import annotations

import tensorflow as tf

from abs_tf.attacks import randomness
from abs_tf.models.preprocessing import (binarize, front_end, logits_after_front_end,  # noqa: F401  (binarize
                                         straight_through)                           # re-exported)

METHODS = ("gaussian", "coordinates")


def _with_gradient(forward, gradient, images):
    """forward(images) with input gradient ``gradient(images, upstream)``; variables get None."""

    @tf.custom_gradient
    def f(x):
        out = forward(x)

        def grad(upstream, variables=None):
            g = tf.reshape(gradient(x, upstream), tf.shape(x))
            g.set_shape(x.shape)
            return (g, [None] * len(variables)) if variables else g

        return out, grad

    return f(images)


class EstimatedGradients:
    """``images [B, 28, 28, 1] in [0, 1] -> logits``, with estimated input gradients.

    Args:
      model: callable images -> logits [B, C].
      method: "gaussian" (antithetic Gaussian sampling) or "coordinates" (finite differences).
      samples: antithetic pairs per gradient for "gaussian" (queries 2 x samples per image).
      sigma: probe size in pixel units (std of the Gaussian probes / finite-difference step).
      batch_size: images per model call when evaluating probes.
      seed: seed of the probe directions (per-image streams; deterministic, independent of
        which images share the batch).
    """

    def __init__(self, model, *, method: str = "gaussian", samples: int = 100, sigma: float = 0.01,
                 batch_size: int = 2000, seed: int = 0):
        if method not in METHODS:
            raise ValueError(f"method must be one of {METHODS}, got {method!r}")
        if samples < 1 or sigma <= 0 or batch_size < 1:
            raise ValueError("EstimatedGradients needs samples >= 1, sigma > 0, batch_size >= 1")
        self.model = model
        self.method = method
        self.samples = int(samples)
        self.sigma = float(sigma)
        self.batch_size = int(batch_size)
        self.seed = int(seed)
        self.queries_per_gradient = 2 * (self.samples if method == "gaussian" else 784)
        if callable(getattr(model, "search", None)):
            self.search = model.search

    def __repr__(self):
        return (f"EstimatedGradients({_name(self.model)}, "
                f"method={self.method!r}, samples={self.samples}, sigma={self.sigma})")

    def __call__(self, images):
        return _with_gradient(self.model, self._estimate, tf.convert_to_tensor(images, tf.float32))

    def _evaluate(self, probes):
        return evaluate_in_chunks(self.model, probes, self.batch_size)

    def _estimate(self, x, upstream):
        """Estimated ∇_x (upstream · logits(x)) [B, 28, 28, 1]."""
        b = tf.shape(x)[0]
        if self.method == "gaussian":
            v = randomness.normal(randomness.image_keys(x, self.seed), [self.samples, 28, 28, 1])  # [B, N, ...]
            v = tf.transpose(v, [1, 0, 2, 3, 4])  # [N, B, 28, 28, 1]
        else:
            v = tf.reshape(tf.eye(784), [784, 1, 28, 28, 1]) * tf.ones_like(x)[None]  # [784, B, ...]
        plus = tf.clip_by_value(x[None] + self.sigma * v, 0.0, 1.0)
        minus = tf.clip_by_value(x[None] - self.sigma * v, 0.0, 1.0)
        probes = tf.reshape(tf.concat([plus, minus], 0), [-1, 28, 28, 1])
        logits = self._evaluate(probes)
        logits = tf.reshape(logits, tf.concat([[2, -1, b], tf.shape(logits)[-1:]], 0))
        s = tf.reduce_sum((logits[0] - logits[1]) * upstream[None], axis=-1)  # [N, B]
        step = plus - minus
        if self.method == "gaussian":
            num = tf.reduce_sum(s[:, :, None, None, None] * v, axis=0)
            den = tf.reduce_sum(step * v, axis=0)
        else:
            num = tf.reduce_sum(s[:, :, None, None, None] * v, axis=0)
            den = tf.reduce_sum(step, axis=0)
        return num / tf.where(tf.abs(den) > 1e-12, den, tf.ones_like(den) * 1e12)


class StraightThrough:
    """BPDA straight-through model (module doc).

    Args:
      model: a model declaring its front end (``model.preprocessing`` not None); or, with
        ``preprocess`` given, a model that expects already-preprocessed images (then the
        forward pass is ``model(preprocess(x))``).
      preprocess: images [B, 28, 28, 1] in [0, 1] -> same shape in [0, 1], for models that
        declare none. A model that declares one must not get another.
    Raises: ValueError if neither the model nor ``preprocess`` gives a front end (wrapping a
      model without one would change nothing and hide that its gradient is its own).
    """

    def __init__(self, model, *, preprocess=None):
        declared = front_end(model)
        if declared is not None and preprocess is not None:
            raise ValueError(f"{_name(model)} declares its preprocessing ({declared!r}); do not pass another")
        if declared is None and preprocess is None:
            raise ValueError(f"{_name(model)} declares no preprocessing (model.preprocessing): straight-through "
                             "has nothing to pass; attack the model itself, or pass preprocess= for a network "
                             "that expects preprocessed images")
        self.model = model
        self.preprocess = declared if declared is not None else preprocess
        # what the verifier reads (`preprocessing.decision_front_end`): the decision starts with it
        self.decision_preprocessing = self.preprocess
        self.behind = logits_after_front_end(model) if declared is not None else model
        if callable(getattr(model, "search", None)):
            self.search = model.search

    def __repr__(self):
        return f"StraightThrough({_name(self.model)})"

    def __call__(self, images):
        return self.behind(straight_through(self.preprocess, images))


def _name(model) -> str:
    return getattr(model, "name", type(model).__name__)


def evaluate_in_chunks(model, probes, batch_size: int):
    """logits of probes [N, 28, 28, 1], ``batch_size`` images per model call (a graph loop,
    usable inside gradient functions, which autograph does not convert)."""
    n = tf.shape(probes)[0]
    chunks = (n + batch_size - 1) // batch_size
    out = tf.TensorArray(tf.float32, size=chunks, infer_shape=False)

    def body(i, out):
        chunk = probes[i * batch_size:(i + 1) * batch_size]
        return i + 1, out.write(i, tf.cast(model(chunk), tf.float32))

    _, out = tf.while_loop(lambda i, _: i < chunks, body, (tf.constant(0), out))
    return out.concat()
