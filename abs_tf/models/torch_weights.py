"""Loading weights of the original PyTorch release into Keras layers.

Layout mapping (torch -> Keras/TF), checked numerically by the equivalence tests:
  Conv2d           weight [out, in, kh, kw] -> Conv2D kernel          [kh, kw, in, out]  (transpose 2,3,1,0)
  ConvTranspose2d  weight [in, out, kh, kw] -> Conv2DTranspose kernel [kh, kw, out, in]  (transpose 2,3,1,0)
  bias             [out]                    -> bias [out]
  BatchNorm2d      weight, bias, running_mean, running_var
                                            -> gamma, beta, moving_mean, moving_variance
Both conventions are cross-correlation without kernel flip on the forward conv, and the
transposed conv is the adjoint of it in both frameworks, so only the axes move.
"""

from __future__ import annotations

from pathlib import Path

import keras
import numpy as np


def conv_kernel(weight: np.ndarray) -> np.ndarray:
    """torch Conv2d/ConvTranspose2d weight -> Keras kernel (both: transpose(2, 3, 1, 0))."""
    if weight.ndim != 4:
        raise ValueError(f"expected a 4-D torch conv weight, got shape {weight.shape}")
    return np.ascontiguousarray(weight.transpose(2, 3, 1, 0))


def load_npz(path) -> dict:
    """Reads an .npz of torch state-dict arrays; errors name the file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"weights file not found: {path}")
    try:
        with np.load(path) as f:
            return {k: f[k] for k in f.files}
    except Exception as e:  # zipfile/pickle errors for corrupt files
        raise ValueError(f"cannot read weights file {path}: {type(e).__name__}: {e}") from e


def assign_torch_stack(model: keras.Model, state: dict, prefix: str, num_layers: int) -> None:
    """Copies ``{prefix}conv_{i}.*`` and ``{prefix}bn_{i}.*`` torch arrays into the layers
    named ``conv_{i}`` / ``bn_{i}`` of a built Keras model (our encoder/decoder/CNN naming).

    Raises KeyError naming the missing array, ValueError on a shape mismatch.
    """
    def get(key):
        full = prefix + key
        if full not in state:
            raise KeyError(f"array {full!r} missing from the torch weights")
        return state[full]

    for i in range(num_layers):
        conv = model.get_layer(f"conv_{i}")
        kernel, bias = conv_kernel(get(f"conv_{i}.weight")), get(f"conv_{i}.bias")
        _set(conv, [kernel, bias], f"{prefix}conv_{i}")
        try:
            bn = model.get_layer(f"bn_{i}")
        except ValueError:
            continue
        _set(bn, [get(f"bn_{i}.weight"), get(f"bn_{i}.bias"), get(f"bn_{i}.running_mean"),
                  get(f"bn_{i}.running_var")], f"{prefix}bn_{i}")


def _set(layer, arrays, name):
    expected = [tuple(w.shape) for w in layer.get_weights()]
    got = [tuple(a.shape) for a in arrays]
    if expected != got:
        raise ValueError(f"{name}: torch arrays have shapes {got}, the Keras layer expects {expected}")
    layer.set_weights([np.asarray(a, np.float32) for a in arrays])
