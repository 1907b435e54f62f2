"""Counting the queries an attack makes to a model.

A *query* is one image passed through the model. A forward pass over a batch of B images
counts B. A backward pass (an input gradient) over B images counts
``B * model.queries_per_gradient``: 1 for models with real gradients (one forward + one
backward pass, by the usual convention), ``2 * samples`` for a model wrapped in
`abs_tf.attacks.EstimatedGradients` (which declares the attribute), so estimated gradients
are charged what they really cost.

The counters are `tf.Variable`s, so counting also works inside `tf.function`s.
"""

from __future__ import annotations

import tensorflow as tf

IMAGES_SPEC = tf.TensorSpec([None, 28, 28, 1], tf.float32, name="images")


class CountingModel:
    """Wraps a model ``images [B, 28, 28, 1] in [0, 1] -> logits [B, 10]`` and counts queries.

    Calling it calls the wrapped model (in whatever mode the caller runs: eager or inside a
    `tf.function`); `logits` is the same call compiled once with a batch-polymorphic
    signature. Gradients flow through unchanged (an identity with a counting gradient sits in
    front of the model).
    """

    def __init__(self, model):
        if not callable(model):
            raise TypeError(f"model must be a callable images -> logits, got {type(model).__name__}")
        self.model = model
        self.queries_per_gradient = int(getattr(model, "queries_per_gradient", 1))
        self.forward_count = tf.Variable(0, dtype=tf.int64, trainable=False, name="forward_queries")
        self.backward_count = tf.Variable(0, dtype=tf.int64, trainable=False, name="backward_queries")
        self.logits = tf.function(self.__call__, input_signature=[IMAGES_SPEC])
        self.functions = {}  # compiled attack functions for this model (see Attack._compile)

    def _count_backward(self, images):
        counter = self.backward_count

        @tf.custom_gradient
        def identity(x):
            def grad(upstream):
                n = tf.cast(tf.shape(upstream)[0], tf.int64)
                with tf.control_dependencies([counter.assign_add(n)]):
                    return tf.identity(upstream)
            return tf.identity(x), grad

        return identity(images)

    def __call__(self, images):
        n = tf.cast(tf.shape(images)[0], tf.int64)
        with tf.control_dependencies([self.forward_count.assign_add(n)]):
            images = self._count_backward(tf.convert_to_tensor(images, tf.float32))
        return self.model(images)

    @property
    def queries(self) -> int:
        """Images evaluated so far: forward rows + backward rows x queries_per_gradient."""
        return int(self.forward_count.numpy()) + int(self.backward_count.numpy()) * self.queries_per_gradient

    def __repr__(self):
        return f"CountingModel({self.model!r})"
