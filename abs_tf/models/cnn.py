"""The paper's CNN baselines: the original release's CNN, its binary variant, the Madry et al.
MNIST network and the substitute CNN for transfer attacks.

Every model here is a `keras.Model` with the project's call convention:

    logits = model(images)     # images float32 [B, 28, 28, 1] in [0, 1] -> logits float32 [B, 10]

The call starts with `abs_tf.checks.check_images` (shape, dtype, NaN/Inf, range), exactly like
ABS, so attacks, evaluation and export can treat every model alike.

Binarization (``binary=True``) is part of the model: pixels ``x >= 0.5`` become 1, the others
0, before the network sees them (as in the original release, ``abs_models/utils.py``). So an
attacker who differentiates the model sees its real decision function, whose input gradient is
zero almost everywhere: TensorFlow has no gradient for the comparison, so ``tf.GradientTape``
returns ``None`` for the input gradient of a binary model (treat it as zero). The model declares
its front end instead of pretending to have a gradient (`abs_tf.models.preprocessing`):
``model.preprocessing`` is ``BINARIZE`` (None for the other models) and
``model.logits_after_preprocessing(x)`` is the network behind it, with its real gradient, so
that ``model(x) == model.logits_after_preprocessing(binarize(x))``; attacks build BPDA from that.
"""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

from abs_tf.checks import check_images
from abs_tf.constants import IMAGE_SHAPE, NUM_CLASSES
from abs_tf.models import torch_weights
from abs_tf.models.preprocessing import BINARIZE, binarize

WEIGHTS_FILE = "model.weights.h5"   # a trained classifier in its weights directory
ARCHITECTURES = ("abs_cnn", "madry", "substitute")


def _abs_cnn_layers():
    """layout.txt section 6: four VALID convs, BatchNorm (eps 1e-5, torch momentum 0.1) + ELU."""
    bn = dict(epsilon=1e-5, momentum=0.9)
    return [
        keras.layers.Conv2D(20, 5, strides=1, padding="valid", name="conv_0"),   # 28 -> 24
        keras.layers.BatchNormalization(name="bn_0", **bn),
        keras.layers.ELU(name="nl_0"),
        keras.layers.Conv2D(70, 4, strides=2, padding="valid", name="conv_1"),   # 24 -> 11
        keras.layers.BatchNormalization(name="bn_1", **bn),
        keras.layers.ELU(name="nl_1"),
        keras.layers.Conv2D(256, 3, strides=2, padding="valid", name="conv_2"),  # 11 -> 5
        keras.layers.BatchNormalization(name="bn_2", **bn),
        keras.layers.ELU(name="nl_2"),
        keras.layers.Conv2D(10, 5, strides=1, padding="valid", name="conv_3"),   # 5 -> 1
        keras.layers.Reshape((10,), name="logits"),
    ]


def _madry_layers():
    """Madry et al. (2018) MNIST challenge network (github.com/MadryLab/mnist_challenge model.py):
    conv 32@5x5 SAME + ReLU -> maxpool 2 -> conv 64@5x5 SAME + ReLU -> maxpool 2
    -> dense 1024 + ReLU -> dense 10."""
    return [
        keras.layers.Conv2D(32, 5, padding="same", activation="relu", name="conv_0"),
        keras.layers.MaxPooling2D(2, name="pool_0"),
        keras.layers.Conv2D(64, 5, padding="same", activation="relu", name="conv_1"),
        keras.layers.MaxPooling2D(2, name="pool_1"),
        keras.layers.Flatten(name="flatten"),
        keras.layers.Dense(1024, activation="relu", name="fc_0"),
        keras.layers.Dense(10, name="logits"),
    ]


def _substitute_layers():
    """Substitute for transfer attacks: deliberately unlike the ABS CNN (3x3 convs, ReLU,
    max pooling, dropout-free dense head, no BatchNorm)."""
    return [
        keras.layers.Conv2D(32, 3, padding="same", activation="relu", name="conv_0"),
        keras.layers.Conv2D(32, 3, padding="same", activation="relu", name="conv_1"),
        keras.layers.MaxPooling2D(2, name="pool_0"),
        keras.layers.Conv2D(64, 3, padding="same", activation="relu", name="conv_2"),
        keras.layers.Conv2D(64, 3, padding="same", activation="relu", name="conv_3"),
        keras.layers.MaxPooling2D(2, name="pool_1"),
        keras.layers.Flatten(name="flatten"),
        keras.layers.Dense(256, activation="relu", name="fc_0"),
        keras.layers.Dense(10, name="logits"),
    ]


_LAYERS = {"abs_cnn": _abs_cnn_layers, "madry": _madry_layers, "substitute": _substitute_layers}


@keras.saving.register_keras_serializable(package="abs_tf")
class ImageClassifier(keras.Model):
    """A feed-forward MNIST classifier with the project's call convention.

    Args:
      architecture: one of ``ARCHITECTURES``: ``"abs_cnn"`` (the original release's CNN,
        layout.txt section 6), ``"madry"`` (Madry et al. MNIST network), ``"substitute"``.
      binary: binarize the input at 0.5 inside the model (see the module docstring); the
        model then declares ``preprocessing = BINARIZE``.

    Call: ``model(images, training=False)``; images float32 [B,28,28,1] in [0,1] -> logits
    float32 [B,10]. ``training=True`` only changes BatchNorm (batch statistics).
    The layers live in ``model.net`` (a `keras.Sequential`; layers named ``conv_{i}``,
    ``bn_{i}``, ...). The model is built on construction, so weights can be loaded at once.
    """

    def __init__(self, architecture: str = "abs_cnn", binary: bool = False, **kwargs):
        if architecture not in _LAYERS:
            raise ValueError(f"unknown architecture {architecture!r}; choose one of {ARCHITECTURES}")
        kwargs.setdefault("name", ("binary_" if binary else "") + architecture)
        super().__init__(**kwargs)
        self.architecture = architecture
        self.binary = bool(binary)
        self.net = keras.Sequential(_LAYERS[architecture](), name="net")
        self.net.build((None, *IMAGE_SHAPE))
        self.built = True

    @property
    def preprocessing(self):
        """The model's front end: ``BINARIZE`` for a binary model, else None."""
        return BINARIZE if self.binary else None

    def call(self, images, training=False):
        x = check_images(images)
        if self.binary:
            x = binarize(x)
        return self._network(x, training)

    def logits_after_preprocessing(self, images, training=False):
        """Logits of images that already went through ``preprocessing`` (binarized pixels for a
        binary model; for the others the same as calling the model): float32 [B,28,28,1] in
        [0,1] -> [B,10], differentiable w.r.t. the images."""
        return self._network(check_images(images), training)

    def _network(self, x, training):
        if training:
            return self.net(x, training=True)
        # oneDNN's convolutions return wrongly shaped results for an empty batch, so B = 0
        # never reaches them.
        empty = lambda: tf.zeros([0, NUM_CLASSES], tf.float32)  # noqa: E731
        if x.shape[0] == 0:
            return empty()
        if x.shape[0] is not None:
            return self.net(x, training=False)
        return tf.cond(tf.shape(x)[0] > 0, lambda: self.net(x, training=False), empty)

    def get_config(self):
        return {"architecture": self.architecture, "binary": self.binary, "name": self.name}


def load_official_cnn(path, binary: bool = False, key_prefix: str = "vanilla_cnn/") -> ImageClassifier:
    """The original release's CNN with its converted PyTorch weights.

    Args:
      path: ``cnn_weights.npz`` (keys ``vanilla_cnn/conv_0.weight`` ...).
      binary: binarize inputs first. The original's binary CNN loader loads the *vanilla*
        weights (layout.txt section 6), which is the default ``key_prefix`` here too;
        ``key_prefix="binary_cnn/"`` loads the unused ``binary_cnn.net`` weights instead.
    Returns: an ``ImageClassifier("abs_cnn", binary)``.
    """
    model = ImageClassifier("abs_cnn", binary=binary)
    state = torch_weights.load_npz(path)
    torch_weights.assign_torch_stack(model.net, state, key_prefix, num_layers=4)
    return model


def predict_logits(model, images, batch_size: int = 500) -> np.ndarray:
    """Logits of any project model on images [N,28,28,1] in [0,1], batched; float32 [N,10]."""
    out = [np.asarray(model(images[i:i + batch_size])) for i in range(0, len(images), batch_size)]
    return np.concatenate(out) if out else np.zeros((0, NUM_CLASSES), np.float32)


def accuracy(model, images, labels, batch_size: int = 500) -> float:
    """Fraction of images [N,28,28,1] whose argmax logit equals labels [N]."""
    logits = predict_logits(model, images, batch_size)
    return float(np.mean(np.argmax(logits, axis=1) == np.asarray(labels)))
