"""Nearest-neighbour baseline of the paper: logits[b, c] = -min_i ||x_b - t_i||_2 over the
training images t_i of class c.

Computation (no Python loop over training images, memory bounded by chunking):
the training images are sorted by class and cut into chunks of ``chunk_size`` images that never
mix classes (the last chunk of a class is padded with copies of one of its images, which cannot
change a minimum). For each chunk, one matrix product gives the squared distances
``||x||^2 + ||t||^2 - 2 <x, t>`` of the whole batch to the chunk ([B, chunk_size] floats at a
time); the running minimum per class keeps the index of the closest image. That expanded form
loses precision in float32 (cancellation), so the distance to the selected image is then
recomputed directly as ``||x - t*||`` -- which is also what the gradient flows through: the
gradient of a minimum is the gradient at the minimiser, ``(x - t*) / ||x - t*||``, so attacks get
exact gradients. (A near-tie can select the second-closest image; its distance is within float32
rounding of the closest.)
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from abs_tf.checks import check_images
from abs_tf.constants import NUM_CLASSES, NUM_PIXELS


class NearestNeighbor(tf.Module):
    """Call: ``model(images)``; images float32 [B,28,28,1] in [0,1] -> logits float32 [B,10]
    (minus the L2 distance, in pixel units on [0,1], to the nearest training image of each class).

    Args:
      train_images: float32 [N,28,28,1] in [0,1]; train_labels: int [N] in 0..9, every class present.
      chunk_size: training images per matrix product; peak memory ~ 4 * B * chunk_size bytes.
    """

    def __init__(self, train_images, train_labels, chunk_size: int = 2048, name: str = "nearest_neighbor"):
        super().__init__(name=name)
        images = np.asarray(train_images, np.float32).reshape(len(train_images), -1)
        labels = np.asarray(train_labels).astype(np.int64)
        if images.shape[1] != NUM_PIXELS or len(labels) != len(images):
            raise ValueError(f"need train_images [N,28,28,1] and labels [N], got {np.shape(train_images)}, "
                             f"{np.shape(train_labels)}")
        if chunk_size < 1:
            raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
        chunks, chunk_class = [], []
        for c in range(NUM_CLASSES):
            members = images[labels == c]
            if len(members) == 0:
                raise ValueError(f"no training image of class {c}")
            n_chunks = -(-len(members) // chunk_size)
            pad = n_chunks * chunk_size - len(members)
            members = np.concatenate([members, np.repeat(members[:1], pad, axis=0)])
            chunks.append(members.reshape(n_chunks, chunk_size, NUM_PIXELS))
            chunk_class += [c] * n_chunks
        chunks = np.concatenate(chunks)
        self.chunk_size = chunk_size
        self.num_chunks = len(chunks)
        # [num_chunks, chunk_size, 784] and their squared norms; class of each chunk.
        self.train_chunks = tf.constant(chunks)
        self.train_sq_norms = tf.constant(np.sum(np.square(chunks, dtype=np.float64), axis=-1).astype(np.float32))
        self.chunk_class = tf.constant(np.asarray(chunk_class, np.int32))

    @classmethod
    def from_mnist(cls, data_dir=None, chunk_size: int = 2048) -> "NearestNeighbor":
        """Built on the 60000 MNIST training images (`abs_tf.data.load_mnist`)."""
        from abs_tf import data
        x, y = data.load_mnist("train", data_dir)
        return cls(x, y, chunk_size=chunk_size)

    def nearest(self, images):
        """Index of the nearest training image per class (no gradient).

        Args: images float32 [B,28,28,1] in [0,1].
        Returns: int32 [B,10] flat indices into ``train_chunks`` reshaped to [-1, 784].
        """
        x = tf.reshape(check_images(images), [-1, NUM_PIXELS])
        x_sq = tf.reduce_sum(tf.square(x), axis=1, keepdims=True)  # [B,1]

        def chunk_min(k):
            d2 = x_sq + self.train_sq_norms[k][None, :] - 2.0 * tf.matmul(x, self.train_chunks[k], transpose_b=True)
            arg = tf.argmin(d2, axis=1, output_type=tf.int32)
            return tf.reduce_min(d2, axis=1), arg + k * self.chunk_size  # [B], [B]

        # One chunk at a time (parallel_iterations=1 keeps the memory of a single [B, chunk] product).
        mins, args = tf.map_fn(chunk_min, tf.range(self.num_chunks),
                               fn_output_signature=(tf.float32, tf.int32), parallel_iterations=1)
        # mins/args: [num_chunks, B] -> per class the chunk with the smallest distance.
        per_class = tf.math.unsorted_segment_min(mins, self.chunk_class, NUM_CLASSES)  # [10, B]
        is_best = tf.equal(mins, tf.gather(per_class, self.chunk_class))  # [num_chunks, B]
        big = tf.fill(tf.shape(args), tf.int32.max)
        # Among chunks attaining the class minimum, take the smallest index (deterministic ties).
        best = tf.math.unsorted_segment_min(tf.where(is_best, args, big), self.chunk_class, NUM_CLASSES)
        return tf.stop_gradient(tf.transpose(best))  # [B,10]

    def __call__(self, images):
        x = check_images(images)
        idx = self.nearest(x)  # [B,10]
        neighbours = tf.gather(tf.reshape(self.train_chunks, [-1, NUM_PIXELS]), idx)  # [B,10,784]
        diff = tf.reshape(x, [-1, 1, NUM_PIXELS]) - neighbours
        sq = tf.reduce_sum(tf.square(diff), axis=-1)  # [B,10]
        # sqrt has an infinite derivative at 0 (an exact training image): clamp, so its gradient is 0 there.
        return -tf.sqrt(tf.maximum(sq, 1e-12))
