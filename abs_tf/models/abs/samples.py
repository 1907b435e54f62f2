"""The fixed latent samples of ABS's first search stage, drawn as the original release drew them."""

from __future__ import annotations

import numpy as np

from abs_tf.constants import LATENT_DIM


def latent_samples(n_samples: int = 8000, seed: int = 1234, fraction_to_dismiss: float = 0.1):
    """The fixed latent samples of the original: int(S / (1 - f)) draws from N(0, I_8) with
    numpy's legacy generator seeded ``seed``; keep the S smallest-norm ones, in draw order.

    Args:
      n_samples: S >= 1.
      seed: a seed for `numpy.random.RandomState` (0 .. 2**32 - 1).
      fraction_to_dismiss: f in [0, 1), the share of largest-norm draws dropped.
    Returns float32 [S, 8]. With the defaults this equals the release's latent_samples.npy.
    """
    if isinstance(n_samples, bool) or not isinstance(n_samples, (int, np.integer)) or n_samples < 1:
        raise ValueError(f"n_samples must be an integer >= 1 (the number of fixed latent samples), got {n_samples!r}")
    if not 0.0 <= fraction_to_dismiss < 1.0:
        raise ValueError(f"fraction_to_dismiss must be in [0, 1), got {fraction_to_dismiss!r}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or not 0 <= seed < 2 ** 32:
        raise ValueError(f"seed must be an integer in 0 .. 2**32 - 1, got {seed!r}")
    rng = np.random.RandomState(seed)
    draws = rng.standard_normal((int(n_samples / (1 - fraction_to_dismiss)), LATENT_DIM))
    norms = np.sum(draws ** 2, axis=1)
    threshold = np.sort(norms)[n_samples - 1]
    keep = norms <= threshold
    return draws[keep][:n_samples].astype(np.float32)
