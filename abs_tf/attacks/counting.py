"""Counting the queries an attack makes to a model, and the decision-only view of a model.

A *forward query* is one image passed through the model (a forward pass over B images counts
B; so does ABS's ``search`` over B images, which returns the reconstructions besides the
logits). A *gradient query* is one image's input gradient (a backward pass over B images
counts B). Their cost in forward queries: ``queries = forward + gradient * queries_per_gradient``
with ``queries_per_gradient`` = 1 for models with real gradients (by the usual convention a
forward + backward pass is one query), ``2 * samples`` (or 2 * 784) for a model wrapped in
`abs_tf.attacks.EstimatedGradients`, which declares the attribute.

The counters are `tf.Variable`s, so counting also works inside `tf.function`s. Counts are
totals; the attack base class attributes them to images (see `abs_tf.attacks.base`).
"""

from __future__ import annotations

import tensorflow as tf

IMAGES_SPEC = tf.TensorSpec([None, 28, 28, 1], tf.float32, name="images")


class CountingModel:
    """Wraps a model ``images [B, 28, 28, 1] in [0, 1] -> logits [B, 10]`` and counts queries.

    Calling it calls the wrapped model (in whatever mode the caller runs: eager or inside a
    `tf.function`); `logits` is the same call compiled once with a batch-polymorphic
    signature. Gradients flow through unchanged (an identity with a counting gradient sits in
    front of the model). A model with a ``search`` method (ABS: reconstructions, latents)
    gets a counted `search` too, so attacks that read reconstructions pay for them.
    """

    def __init__(self, model):
        if not callable(model):
            raise TypeError(f"model must be a callable images -> logits, got {type(model).__name__}")
        self.model = model
        self.queries_per_gradient = int(getattr(model, "queries_per_gradient", 1))
        self.forward_count = tf.Variable(0, dtype=tf.int64, trainable=False, name="forward_queries")
        self.gradient_count = tf.Variable(0, dtype=tf.int64, trainable=False, name="gradient_queries")
        self.logits = tf.function(self.__call__, input_signature=[IMAGES_SPEC])
        self.functions = {}  # compiled attack functions for this model (see Attack._compile)
        if callable(getattr(model, "search", None)):
            self.search = self._search

    def _count_gradient(self, images):
        counter = self.gradient_count

        @tf.custom_gradient
        def identity(x):
            def grad(upstream):
                n = tf.cast(tf.shape(upstream)[0], tf.int64)
                with tf.control_dependencies([counter.assign_add(n)]):
                    return tf.identity(upstream)
            return tf.identity(x), grad

        return identity(images)

    def _count_forward(self, images):
        n = tf.cast(tf.shape(images)[0], tf.int64)
        with tf.control_dependencies([self.forward_count.assign_add(n)]):
            return tf.identity(tf.convert_to_tensor(images, tf.float32))

    def __call__(self, images):
        return self.model(self._count_gradient(self._count_forward(images)))

    def _search(self, images):
        """The wrapped model's ``search(images)`` (dict of tensors), counted as forward queries."""
        return self.model.search(self._count_forward(images))

    def counts(self) -> tuple:
        """(forward, gradient) queries so far, Python ints."""
        return int(self.forward_count.numpy()), int(self.gradient_count.numpy())

    @property
    def queries(self) -> int:
        """Forward-query equivalents so far: forward + gradient x queries_per_gradient."""
        forward, gradient = self.counts()
        return forward + gradient * self.queries_per_gradient

    def __repr__(self):
        return f"CountingModel({self.model!r})"


class DecisionModel:
    """The decision-only view of a (counted) model, for decision-based attacks.

    ``decision(images [B, 28, 28, 1]) -> int64 [B]``: the predicted classes, nothing else (no
    logits, no gradient: the input is cut from the tape). Every call is counted as forward
    queries by the wrapped `CountingModel`.
    """

    def __init__(self, counted: CountingModel):
        if not isinstance(counted, CountingModel):
            raise TypeError("DecisionModel wraps a CountingModel (attacks get one from the base class)")
        self._counted = counted

    def __call__(self, images):
        return tf.argmax(self._counted(tf.stop_gradient(images)), axis=-1)

    def is_adversarial(self, images, labels, criterion):
        """bool [B]: ``criterion.decide`` on the predicted classes."""
        return criterion.decide(self(images), labels)

    def __repr__(self):
        return f"DecisionModel({self._counted.model!r})"
