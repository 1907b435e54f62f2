"""A linear classifier with known minimal adversarials: the attacks' answer key.

For logits z = W^T x + b and an image x of class y, the smallest perturbation (ignoring the
[0, 1] box) that makes class c score at least as high as y has size

    L2:  (z_y - z_c) / ||w_y - w_c||_2          L∞:  (z_y - z_c) / ||w_y - w_c||_1

(the dual norm of the gradient), reached by δ = m (w_c - w_y) / ||w_y - w_c||_2² (L2) or
δ = m sign(w_c - w_y) / ||w_y - w_c||_1 (L∞). The minimum over c is the minimal adversarial.
When x + δ stays inside [0, 1] the box does not bind and this is the exact optimum of the
constrained problem, so no verified adversarial can be smaller and a good attack gets close.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

_DUAL = {"l2": 2, "linf": 1}


class LinearModel:
    """``images [B, 28, 28, 1] -> logits = flatten(images) @ weights + bias [B, C]``.

    Args: weights float32 [784, C]; bias float32 [C] (default zeros).
    """

    def __init__(self, weights, bias=None, *, name: str = "linear"):
        self.weights = np.asarray(weights, np.float32)
        if self.weights.ndim != 2 or self.weights.shape[0] != 784:
            raise ValueError(f"weights must be [784, C], got {self.weights.shape}")
        c = self.weights.shape[1]
        self.bias = np.zeros(c, np.float32) if bias is None else np.asarray(bias, np.float32)
        self.name = name
        self._w = tf.constant(self.weights)
        self._b = tf.constant(self.bias)

    def __repr__(self):
        return f"LinearModel({self.name})"

    def __call__(self, images):
        x = tf.reshape(tf.cast(images, tf.float32), [-1, 784])
        return tf.matmul(x, self._w) + self._b

    def minimal_adversarials(self, images, labels, norm: str):
        """Unconstrained minimal perturbations (ignoring the box).

        Returns: (distance float [B] in the norm, closest class int [B], delta float32 [B, 28, 28, 1]).
        """
        if norm not in _DUAL:
            raise ValueError(f"norm must be 'l2' or 'linf', got {norm!r}")
        x = np.asarray(images, np.float32).reshape(-1, 784)
        y = np.asarray(labels)
        z = x @ self.weights + self.bias
        distance = np.full(len(y), np.inf)
        closest = np.zeros(len(y), np.int64)
        delta = np.zeros_like(x)
        for i, label in enumerate(y):
            for c in range(self.weights.shape[1]):
                if c == label:
                    continue
                d = self.weights[:, c] - self.weights[:, label]
                m = z[i, label] - z[i, c]
                size = np.linalg.norm(d, ord=_DUAL[norm])
                if size > 0 and m / size < distance[i]:
                    distance[i], closest[i] = m / size, c
                    delta[i] = m * d / size**2 if norm == "l2" else m * np.sign(d) / size
        return distance, closest, delta.reshape(-1, 28, 28, 1)


def random_linear_model(seed: int = 0, num_classes: int = 10, *, column_norm: float = 100.0,
                        binary: bool = False) -> LinearModel:
    """A well-conditioned test model: logits = W^T (x - 0.5) with orthogonal columns of equal
    norm, so every pair of classes is equally far apart in L2 (the closest class is the
    runner-up logit, which a cross-entropy attack heads for). ``column_norm`` sets the logit
    scale only (distances are scale-free): 100 gives margins of ~10 for x in [0.35, 0.65], a
    peaked softmax that float32 cross-entropy still resolves. ``binary``: only classes 0 and
    1 compete (the others get weight 0 and bias -1e4)."""
    rng = np.random.default_rng(seed)
    q, _ = np.linalg.qr(rng.normal(size=(784, num_classes)))
    weights = (column_norm * q).astype(np.float32)
    if binary:
        weights[:, 2:] = 0.0
    bias = -0.5 * weights.sum(axis=0)
    if binary:
        bias[2:] = -1e4
    return LinearModel(weights, bias, name=f"seed{seed}{'-binary' if binary else ''}")


def linear_problem(seed: int = 0, n: int = 6, *, binary: bool = False, strength=(0.5, 1.5),
                   runner_up: float = 0.6, noise: float = 0.02):
    """A `random_linear_model` (column norm 25) and ``n`` images with one clearly closest
    wrong class, so first-order attacks have a well-defined target:

        x_i = 0.5 + s_i (w_{y_i} + runner_up w_{c_i}) / 25 + U(-noise, noise),  s_i ~ U(strength)

    Margins: ~25 (1 - runner_up) s_i to c_i (minimal L2 ~ 0.4 s_i / sqrt 2 = 0.14 .. 0.42),
    ~25 s_i to the others; all within float32 cross-entropy's resolution. The unconstrained
    optimum stays inside [0, 1] (tests check it). Returns (model, images float32
    [n, 28, 28, 1] in [0, 1], labels int64 [n] = the model's predictions).
    """
    model = random_linear_model(seed, column_norm=25.0, binary=binary)
    rng = np.random.default_rng(seed + 1000)
    k = 2 if binary else model.weights.shape[1]
    labels = rng.integers(0, k, size=n)
    others = (labels + rng.integers(1, k, size=n)) % k
    w = model.weights.T
    s = rng.uniform(*strength, size=(n, 1))
    x = 0.5 + s * (w[labels] + runner_up * w[others]) / 25.0 + rng.uniform(-noise, noise, size=(n, 784))
    images = np.clip(x, 0.0, 1.0).astype(np.float32).reshape(n, 28, 28, 1)
    predictions = np.argmax(model(images).numpy(), axis=1).astype(np.int64)
    return model, images, predictions
