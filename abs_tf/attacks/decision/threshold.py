"""An L0 answer key: a classifier whose minimal L0 (and L2 at that L0) adversarial is known.

`ThresholdModel`: class 1 ("fires") when the sum of a fixed set S of k pixels drops below a
threshold T, else class 0. For an image x of class 0, pixels outside S do not matter, and the
fewest pixels to change are the largest ones of S, set to 0: the minimal L0 is the smallest m
with (sum of the m largest x_S) > sum(x_S) - T. With every pixel of S at 1 and
``deficit = k - T`` not an integer (`threshold_problem`), m = floor(deficit) + 1. At that L0
the L2-smallest adversarial splits the decrease evenly (L2 = deficit / sqrt(m)); Pointwise,
whose start sets the m pixels to 0 and whose binary search then restores one pixel at a time,
reaches sqrt(m - 1 + (deficit - m + 1)²): the first pixel searched takes up all the slack and
the others cannot move.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf


class ThresholdModel:
    """``images [B, 28, 28, 1] -> logits [B, 2]``: ``[sum(x_S) - T, 0]`` (class 1 iff sum < T).

    Args: pixels int [k] (flat indices of S), threshold float T.
    """

    def __init__(self, pixels, threshold: float):
        self.pixels = np.asarray(pixels, np.int64).reshape(-1)
        if self.pixels.size == 0 or self.pixels.min() < 0 or self.pixels.max() >= 784:
            raise ValueError("pixels must be a non-empty set of flat indices in [0, 784)")
        self.threshold = float(threshold)
        self._pixels = tf.constant(self.pixels)

    def __repr__(self):
        return f"ThresholdModel(k={self.pixels.size}, threshold={self.threshold})"

    def __call__(self, images):
        x = tf.reshape(tf.cast(images, tf.float32), [-1, 784])
        s = tf.reduce_sum(tf.gather(x, self._pixels, axis=1), axis=1)
        return tf.stack([s - self.threshold, tf.zeros_like(s)], axis=1)

    def minimal_l0(self, images) -> np.ndarray:
        """int [B]: fewest changed pixels that make class-0 images fire (module doc)."""
        x = np.asarray(images, np.float32).reshape(-1, 784)[:, self.pixels]
        need = x.sum(axis=1) - self.threshold                                 # decrease needed (> 0)
        largest = np.cumsum(-np.sort(-x, axis=1), axis=1)
        return np.argmax(largest > need[:, None], axis=1) + 1


def threshold_problem(seed: int = 0, n: int = 4, *, k: int = 20, deficit: float = 3.3):
    """A `ThresholdModel` and ``n`` class-0 images: pixels of S at 1, the others U(0, 0.4).

    Returns (model, images float32 [n, 28, 28, 1], labels int64 [n] (zeros), minimal L0 m,
    Pointwise's L2 at L0 m) with m = floor(deficit) + 1 (module doc).
    """
    if deficit <= 0 or deficit >= k or float(deficit).is_integer():
        raise ValueError(f"deficit must be a non-integer in (0, k), got {deficit}")
    rng = np.random.default_rng(seed)
    pixels = rng.choice(784, k, replace=False)
    model = ThresholdModel(pixels, k - deficit)
    x = rng.uniform(0.0, 0.4, (n, 784)).astype(np.float32)
    x[:, pixels] = 1.0
    m = int(np.floor(deficit)) + 1
    l2 = float(np.sqrt(m - 1 + (deficit - m + 1) ** 2))
    return model, x.reshape(n, 28, 28, 1), np.zeros(n, np.int64), m, l2
