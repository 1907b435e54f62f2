"""Non-linear test models whose minimal adversarials are computable: the attacks' harder answer key.

`linear.py`'s linear classifiers are solved exactly by any one-step attack, so they cannot tell
a weak attack from a strong one. These two models can (each test also runs a deliberately
weakened attack that must fail):

* `PolytopeModel` (a max of linear pieces): class 0 has logit ``max_k (w_k·x + b_k)``, class 1
  logit 0 (classes 2-9: -1e4). The adversarial region {x : w_k·x + b_k <= 0 for all k} is a
  polytope; from an image outside it where several pieces are positive, the closest point is a
  *corner*: one gradient step (towards the active piece's boundary) does not reach it,
  iterating does. `polytope_problem` builds images whose L2 optimum is the corner of two
  pieces at a chosen angle, and `PolytopeModel.minimal_distance` solves L2 exactly (KKT over
  the active sets) and L∞ exactly for pieces with disjoint pixel supports
  (t = max_k m_k / ||w_k||_1, each piece pushed on its own pixels).
* `RadialModel`: class 0 has logit ``scale (r² - ||x - c||²)``, class 1 logit 0: adversarial
  outside an L2 ball. Minimal L2 = r - ||x - c||; minimal L∞ = the t with
  ``Σ_i (|x_i - c_i| + t)² = r²``. At the centre the input gradient is exactly zero, so only a
  random start (or restarts) lets a gradient attack move.

Both return logits [B, 10] for images [B, 28, 28, 1]; the builders keep the optima inside [0, 1]
(checked), so the answers are those of the box-constrained problem.
"""

from __future__ import annotations

import itertools

import numpy as np
import tensorflow as tf

_OTHERS = -1e4


def _logits(class0, batch):
    others = tf.fill(tf.stack([batch, 8]), tf.constant(_OTHERS, tf.float32))
    return tf.concat([class0[:, None], tf.zeros_like(class0)[:, None], others], axis=1)


class PolytopeModel:
    """Class 0 iff some piece w_k·x + b_k > 0 (module doc). weights float [K, 784], bias [K]."""

    def __init__(self, weights, bias, *, name: str = "polytope"):
        self.weights = np.asarray(weights, np.float32)
        self.bias = np.asarray(bias, np.float32)
        if self.weights.ndim != 2 or self.weights.shape[1] != 784 or self.bias.shape != self.weights.shape[:1]:
            raise ValueError(f"weights must be [K, 784] and bias [K], got {self.weights.shape}, {self.bias.shape}")
        self.name = name
        self._w, self._b = tf.constant(self.weights.T), tf.constant(self.bias)

    def __repr__(self):
        return f"PolytopeModel({self.name})"

    def __call__(self, images):
        x = tf.reshape(tf.cast(images, tf.float32), [-1, 784])
        return _logits(tf.reduce_max(tf.matmul(x, self._w) + self._b, axis=1), tf.shape(x)[0])

    def minimal_distance(self, images, norm: str) -> np.ndarray:
        """float [B]: the exact minimal perturbation (ignoring the box) into the polytope."""
        x = np.asarray(images, np.float64).reshape(-1, 784)
        w = self.weights.astype(np.float64)
        m = x @ w.T + self.bias                                                    # [B, K] > 0: violated
        if norm == "linf":
            support = np.abs(w) > 0
            if np.any(support.sum(axis=0) > 1):
                raise ValueError("the L∞ answer needs pieces with disjoint pixel supports")
            return np.max(np.maximum(m, 0) / np.abs(w).sum(axis=1), axis=1)
        if norm != "l2":
            raise ValueError(f"norm must be 'l2' or 'linf', got {norm!r}")
        out = np.full(len(x), np.inf)
        for i, margins in enumerate(m):
            for size in range(1, len(w) + 1):
                for active in itertools.combinations(range(len(w)), size):
                    a = w[list(active)]
                    lam = np.linalg.solve(a @ a.T, margins[list(active)])
                    delta = -lam @ a
                    if np.all(lam >= -1e-9) and np.all((x[i] + delta) @ w.T + self.bias <= 1e-7):
                        out[i] = min(out[i], np.linalg.norm(delta))
        return out


def polytope_problem(seed: int = 0, n: int = 4, *, cos_angle: float = 0.5, size=(0.4, 0.8), disjoint: bool = False):
    """A two-piece `PolytopeModel` and ``n`` images whose closest adversarial is the corner.

    The pieces have unit normals w_1, w_2 with w_1·w_2 = ``cos_angle`` (``disjoint``: on
    disjoint halves of the pixels, cos 0). Each image is x = x* + l_1 w_1 + l_2 w_2 with
    x* ~ 0.5 + U(-0.05, 0.05) on both boundaries and l_k ~ U(size): its L2 optimum is x*
    (the KKT multipliers are l >= 0). Returns (model, images float32 [n, 28, 28, 1], labels
    int64 [n] = 0, the model's class).
    """
    rng = np.random.default_rng(seed)
    if disjoint:
        w = np.zeros((2, 784))
        half = rng.permutation(784)
        w[0, half[:392]] = rng.normal(size=392)
        w[1, half[392:]] = rng.normal(size=392)
    else:
        q, _ = np.linalg.qr(rng.normal(size=(784, 2)))
        w = np.stack([q[:, 0], cos_angle * q[:, 0] + np.sqrt(1 - cos_angle ** 2) * q[:, 1]])
    w /= np.linalg.norm(w, axis=1, keepdims=True)
    images = []
    corner = 0.5 + rng.uniform(-0.05, 0.05, size=(n, 784))
    lam = rng.uniform(*size, size=(n, 2))
    # One model for all images: shift each corner onto the common boundaries along span(w).
    biases = -w @ corner[0]
    for i in range(n):
        gap = w @ corner[i] + biases                                   # move corner i onto both boundaries
        corner[i] -= np.linalg.solve(w @ w.T, gap) @ w
        images.append(corner[i] + lam[i] @ w)
    images = np.asarray(images)
    if images.min() < 0 or images.max() > 1 or corner.min() < 0 or corner.max() > 1:
        raise ValueError("polytope_problem: images or optima leave [0, 1]; choose smaller sizes")
    model = PolytopeModel(w, biases, name=f"seed{seed}{'-disjoint' if disjoint else ''}")
    return model, images.astype(np.float32).reshape(n, 28, 28, 1), np.zeros(n, np.int64)


class RadialModel:
    """Class 0 inside the L2 ball of radius ``radius`` around ``center`` [28, 28, 1] (module doc)."""

    def __init__(self, center, radius: float, *, scale: float = 10.0):
        self.center = np.asarray(center, np.float32).reshape(28, 28, 1)
        self.radius, self.scale = float(radius), float(scale)
        self._c = tf.constant(self.center)

    def __repr__(self):
        return f"RadialModel(radius={self.radius})"

    def __call__(self, images):
        x = tf.cast(images, tf.float32)
        sq = tf.reduce_sum(tf.square(x - self._c), axis=[1, 2, 3])
        return _logits(self.scale * (self.radius ** 2 - sq), tf.shape(x)[0])

    def minimal_distance(self, images, norm: str) -> np.ndarray:
        """float [B]: the exact minimal perturbation (ignoring the box) out of the ball."""
        a = np.abs(np.asarray(images, np.float64).reshape(-1, 784) - self.center.reshape(1, 784))
        if norm == "l2":
            return self.radius - np.linalg.norm(a, axis=1)
        if norm != "linf":
            raise ValueError(f"norm must be 'l2' or 'linf', got {norm!r}")
        # 784 t² + 2 t Σa + Σa² - r² = 0, positive root.
        s1, s2 = a.sum(axis=1), np.square(a).sum(axis=1)
        return (-2 * s1 + np.sqrt(4 * s1 ** 2 - 4 * 784 * (s2 - self.radius ** 2))) / (2 * 784)


def radial_problem(seed: int = 0, n: int = 4, *, radius: float = 1.5, offsets=(0.0, 0.9)):
    """A `RadialModel` (centre 0.5 + U(-0.1, 0.1), ``radius``) and ``n`` images at L2 distances
    spaced over ``offsets`` (as fractions of the radius) from the centre; the first image is
    the centre itself (zero gradient) when offsets[0] == 0. Returns (model, images, labels = 0)."""
    rng = np.random.default_rng(seed)
    center = 0.5 + rng.uniform(-0.1, 0.1, size=784)
    fractions = np.linspace(*offsets, n)
    directions = rng.normal(size=(n, 784))
    directions /= np.linalg.norm(directions, axis=1, keepdims=True)
    images = center + (fractions * radius)[:, None] * directions
    model = RadialModel(center, radius)
    reach = np.abs(images - center) + model.minimal_distance(images.reshape(n, 28, 28, 1), "linf")[:, None]
    exits = center + radius * directions  # the L2 optima of the off-centre images
    if (np.any(center - reach < 0) or np.any(center + reach > 1) or exits.min() < 0 or exits.max() > 1):
        raise ValueError("radial_problem: the optima leave [0, 1]; choose a smaller radius")
    return model, images.astype(np.float32).reshape(n, 28, 28, 1), np.zeros(n, np.int64)
