"""abs-tf: the Analysis-by-Synthesis (ABS) robust MNIST classifier in TensorFlow/Keras.

Public names (imported lazily, so ``import abs_tf`` stays cheap):
  `ABS` (ABS and Binary ABS), `load_mnist`, `load_model` and `build_model` (the model registry).
Subpackages: `models`, `training`, `attacks`, `evaluation`.
Images are NHWC float32 [B, 28, 28, 1] with pixels in [0, 1] everywhere.
"""

import os
import sys
import warnings

# The one place that sets TF_ENABLE_ONEDNN_OPTS (drivers and tests import abs_tf first instead).
# TF leaves oneDNN off by default on some CPUs (e.g. AMD EPYC without AVX-512); the ABS search and
# the CNNs run much faster with it. Measured on a 2-core AMD EPYC with AVX-512 (TF 2.21, where TF
# turns oneDNN on by itself), ABS official weights, 8000 samples, 50 steps, batch 64, fresh process
# per setting, alternating: 10.4-12.2 images/s with TF_ENABLE_ONEDNN_OPTS=0, 18.7-36.9 with =1
# (1.5-3x, shared and noisy machine); the CNN 2.1-3.0k vs 4.8-8.8k images/s. On AVX2-only EPYC
# the search ran 1.7-1.8x faster with it (BENCHMARKS.md). TF reads the variable when it is
# imported, so this only takes effect if abs_tf comes first; set TF_ENABLE_ONEDNN_OPTS=0 yourself
# to opt out (it is never overridden).
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

# public name -> (module, attribute), imported on first use
_PUBLIC = {
    "ABS": ("abs_tf.models.abs.model", "ABS"),
    "load_mnist": ("abs_tf.data", "load_mnist"),
    "load_model": ("abs_tf.registry", "load_model"),
    "build_model": ("abs_tf.registry", "build_model"),
}
__all__ = sorted(_PUBLIC)


def __getattr__(name):
    # Lazy, so that `import abs_tf` stays cheap and the oneDNN default above can take effect.
    if name in _PUBLIC:
        import importlib

        module, attribute = _PUBLIC[name]
        return getattr(importlib.import_module(module), attribute)
    raise AttributeError(f"module 'abs_tf' has no attribute {name!r}")


def __dir__():
    return sorted(list(globals()) + list(_PUBLIC))
