"""abs-tf: the Analysis-by-Synthesis (ABS) robust MNIST classifier in TensorFlow/Keras.

Public names: `ABS` (ABS and Binary ABS), `load_mnist`; subpackages `attacks`, ...
Images are NHWC float32 [B, 28, 28, 1] with pixels in [0, 1] everywhere.
"""

import os

# TF leaves oneDNN off by default on some CPUs (e.g. AMD); the ABS search and the CNNs run
# faster with it (fused matmul+bias+ELU, faster convolutions). Only effective if TensorFlow
# has not been imported yet; set TF_ENABLE_ONEDNN_OPTS=0 yourself to opt out.
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")

__version__ = "0.1.0"


def __getattr__(name):
    # Lazy, so that `import abs_tf` stays cheap and the oneDNN default above can take effect.
    if name == "ABS":
        from abs_tf.abs_model import ABS
        return ABS
    if name == "load_mnist":
        from abs_tf.data import load_mnist
        return load_mnist
    raise AttributeError(f"module 'abs_tf' has no attribute {name!r}")
