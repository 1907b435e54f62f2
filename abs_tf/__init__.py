"""abs-tf: the Analysis-by-Synthesis (ABS) robust MNIST classifier in TensorFlow/Keras.

Public names: `ABS` (ABS and Binary ABS), `load_mnist`; subpackages `attacks`, ...
Images are NHWC float32 [B, 28, 28, 1] with pixels in [0, 1] everywhere.
"""

import os
import sys
import warnings

# TF leaves oneDNN off by default on some CPUs (e.g. AMD); the ABS search and the CNNs run
# faster with it (oneDNN convolutions instead of per-image GEMMs: 1.7-1.8x for the search,
# BENCHMARKS.md). TF reads the variable when it is imported, so this only takes effect if
# abs_tf comes first; set TF_ENABLE_ONEDNN_OPTS=0 yourself to opt out.
_ONEDNN_VARIABLE = "TF_ENABLE_ONEDNN_OPTS"


def _onednn_enabled():
    """Whether the imported TensorFlow runs oneDNN ops (None if it cannot tell)."""
    try:
        from tensorflow.python.util import _pywrap_util_port
        return bool(_pywrap_util_port.IsMklEnabled())
    except Exception:  # a private API: absent or changed in other TF builds
        return None


if _ONEDNN_VARIABLE not in os.environ and "tensorflow" in sys.modules and _onednn_enabled() is False:
    warnings.warn("abs_tf was imported after TensorFlow, which started with oneDNN off on this CPU: the ABS "
                  "search runs ~1.7x slower. Import abs_tf before tensorflow, or set TF_ENABLE_ONEDNN_OPTS=1 "
                  "(=0 to silence this).", RuntimeWarning, stacklevel=2)
os.environ.setdefault(_ONEDNN_VARIABLE, "1")

__version__ = "0.1.0"


def __getattr__(name):
    # Lazy, so that `import abs_tf` stays cheap and the oneDNN default above can take effect.
    if name == "ABS":
        from abs_tf.models.abs.model import ABS
        return ABS
    if name == "load_mnist":
        from abs_tf.data import load_mnist
        return load_mnist
    raise AttributeError(f"module 'abs_tf' has no attribute {name!r}")
