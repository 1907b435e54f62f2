"""Per-image estimate of a certified L2 lower bound for ABS (SPEC §3).

Work in summed squared error (the /784 normalisation undone). For the true class y at its
found latent z*_y let r_y = ||x - G_y(z*_y)|| and k_y = ½ beta ||z*_y||²; likewise r_c, k_c
for another class c. A perturbation of L2 size eps can raise the true class's loss at most to
(r_y + eps)² + k_y (triangle inequality at the fixed latent z*_y), and lower class c's loss at
least to (r_c - eps)₊² + k_c, where the latent search's z*_c stands in for the minimiser over
z (so the result is an estimate of a certificate, not a proof). The bound is the smallest eps
at which the second can fall below the first, minimised over c != y:

  eps_c = (r_c² + k_c - r_y² - k_y) / (2 (r_c + r_y))          if eps_c <= r_c,
  eps_c = sqrt(k_c - k_y) - r_y                                 otherwise (then > r_c).

Images the model misclassifies get 0. Units: L2 norm of pixels in [0, 1].
"""

from __future__ import annotations

import numpy as np


def l2_lower_bounds(images, reconstructions, latents, labels, beta: float = 1.0):
    """Certified-L2 estimates per image.

    Args:
      images: [B,28,28,1] in [0,1] (the model's input after any preprocessing).
      reconstructions: [B,28,28,10] G_c(z*_c) for every class.
      latents: [B,10,8] the found latents z*_c.
      labels: int [B] true classes.
    Returns:
      float64 [B] bounds (0 where another class already explains x at least as well).
    """
    x = np.asarray(images, np.float64)
    rec = np.asarray(reconstructions, np.float64)
    z = np.asarray(latents, np.float64)
    labels = np.asarray(labels)
    b = len(labels)
    r = np.sqrt(np.sum((x - rec) ** 2, axis=(1, 2)))                 # [B,10]
    k = 0.5 * beta * np.sum(z ** 2, axis=-1)                          # [B,10]
    rows = np.arange(b)
    r_y, k_y = r[rows, labels][:, None], k[rows, labels][:, None]
    loss_gap = r ** 2 + k - r_y ** 2 - k_y                            # [B,10], 784 * (l_c - l_y)
    with np.errstate(divide="ignore", invalid="ignore"):
        eps = loss_gap / (2.0 * (r + r_y))
        beyond = eps > r
        eps = np.where(beyond, np.sqrt(np.maximum(k - k_y, 0.0)) - r_y, eps)
    eps = np.where(loss_gap <= 0, 0.0, eps)
    eps[rows, labels] = np.inf
    return np.maximum(np.min(eps, axis=1), 0.0)


def logits_and_bounds(model, images, labels):
    """One search of an ABS ``model`` (not binary: a bound on binarized inputs certifies nothing
    about the raw ones) gives both its logits and the certified-L2 estimates.

    Args:
      model: an `abs_tf.models.abs.model.ABS` with ``binary=False``.
      images: float32 [B,28,28,1] in [0,1]; labels: int [B] true classes.
    Returns:
      (logits float32 [B,10] numpy, bounds float64 [B] numpy), the logits equal to ``model(images)``.
    """
    if model.binary:
        raise ValueError("certified bounds are defined for ABS, not Binary ABS (its input is binarized)")
    out = model.search(images)
    logits = (-out["losses"] * model.scalings).numpy()
    bounds = l2_lower_bounds(images, out["reconstructions"].numpy(), out["latents"].numpy(), labels,
                             beta=model.beta)
    return logits, bounds
