"""Models with substitute gradients, so every gradient attack runs on them unchanged.

`EstimatedGradients(model)`: forward = ``model``; backward = an estimate from model queries
only, via `tf.custom_gradient` (for ABS, whose latent search gives no usable gradient, and
binarized models). For upstream weights u [B, C] the vector-Jacobian product
g = ∇_x (u · logits(x)) is estimated per image as

* ``"gaussian"`` (antithetic, the paper's unbiased alternative): N directions v_n ~ N(0, I);
  probes x_n± = clip(x ± sigma v_n, 0, 1); s_n = u · (logits(x_n+) - logits(x_n-));
  ``g_j = Σ_n s_n v_nj / Σ_n (x_n+ - x_n-)_j v_nj`` — for unclipped probes this is the usual
  ``Σ_n s_n v_n / (2 sigma Σ_n v_nj²)``; normalising by the realised probe difference keeps
  it consistent (no shrinkage) also for pixels clipped at 0 or 1 (most of MNIST).
* ``"coordinates"`` (the original ABS evaluation): central differences per pixel,
  ``g_j = (s(x + h e_j) - s(x - h e_j)) / ((x + h e_j)_j - (x - h e_j)_j)`` with clipped probes;
  784 x 2 queries per image, exact for linear models.

Probes are clipped to [0, 1] because the project's models check their input range.
``queries_per_gradient`` tells `CountingModel` what a gradient costs. Probes are evaluated in
chunks of ``batch_size`` images.

`StraightThrough(model, preprocess=binarize)`: BPDA (Athalye et al. 2018): forward
``model(preprocess(x))``, backward as if ``preprocess`` were the identity.
"""

from __future__ import annotations

import tensorflow as tf

from abs_tf.models.cnn import binarize  # noqa: F401  (the one binarization of the project; re-exported)

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
      seed: seed of the probe generator (a `tf.random.Generator`; deterministic sequence).
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
        with tf.init_scope():
            self._rng = tf.random.Generator.from_seed(self.seed)

    def __repr__(self):
        return (f"EstimatedGradients({getattr(self.model, 'name', type(self.model).__name__)}, "
                f"method={self.method!r}, samples={self.samples}, sigma={self.sigma})")

    def __call__(self, images):
        return _with_gradient(self.model, self._estimate, tf.convert_to_tensor(images, tf.float32))

    def _evaluate(self, probes):
        """logits of probes [N, 28, 28, 1], in chunks of batch_size."""
        n = tf.shape(probes)[0]
        chunks = (n + self.batch_size - 1) // self.batch_size
        out = tf.TensorArray(tf.float32, size=chunks, infer_shape=False)

        def body(i, out):  # explicit while_loop: gradient functions are not autograph-converted
            chunk = probes[i * self.batch_size:(i + 1) * self.batch_size]
            return i + 1, out.write(i, tf.cast(self.model(chunk), tf.float32))

        _, out = tf.while_loop(lambda i, _: i < chunks, body, (tf.constant(0), out))
        return out.concat()

    def _estimate(self, x, upstream):
        """Estimated ∇_x (upstream · logits(x)) [B, 28, 28, 1]."""
        b = tf.shape(x)[0]
        if self.method == "gaussian":
            v = self._rng.normal(tf.concat([[self.samples], tf.shape(x)], 0))  # [N, B, 28, 28, 1]
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
    """BPDA straight-through model: ``model(preprocess(x))`` with the preprocess gradient
    replaced by the identity (e.g. binarization, whose true gradient is zero almost everywhere).

    Args:
      model: callable images -> logits, applied to preprocessed images.
      preprocess: images [B, 28, 28, 1] in [0, 1] -> same shape in [0, 1] (default `binarize`).
    """

    def __init__(self, model, *, preprocess=binarize):
        self.model = model
        self.preprocess = preprocess

    def __repr__(self):
        return f"StraightThrough({getattr(self.model, 'name', type(self.model).__name__)})"

    def __call__(self, images):
        @tf.custom_gradient
        def straight_through(x):
            return self.preprocess(x), lambda upstream: upstream

        return self.model(straight_through(tf.convert_to_tensor(images, tf.float32)))

