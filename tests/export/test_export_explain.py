"""The explain signature's certified-L2 estimate in the graph equals abs_tf.models.abs.certify's."""

from __future__ import annotations

import numpy as np

from abs_tf.export.explain import certified_l2
from abs_tf.models.abs.certify import l2_lower_bounds


def test_graph_estimate_equals_certify_module():
    rng = np.random.default_rng(0)
    b = 64
    images = rng.uniform(0, 1, (b, 28, 28, 1)).astype(np.float32)
    # Reconstructions near the image for some classes, far for others: both branches of the formula.
    noise = rng.uniform(0.02, 0.6, (b, 1, 1, 10)).astype(np.float32)
    reconstructions = np.clip(images + noise * rng.standard_normal((b, 28, 28, 10)), 0, 1).astype(np.float32)
    latents = (rng.standard_normal((b, 10, 8)) * rng.uniform(0.1, 6, (b, 10, 1))).astype(np.float32)
    labels = rng.integers(0, 10, b)
    reconstructions[0] = images[0]                      # a perfect explanation of every class: r = 0
    latents[0] = 0.0
    latents[1, :, :] = latents[1, :1, :]                 # every class equally good: ties give 0
    reconstructions[1] = reconstructions[1, ..., :1]
    expected = l2_lower_bounds(images, reconstructions, latents, labels, beta=1.0)
    got = certified_l2(images, reconstructions, latents, labels, beta=1.0).numpy()
    assert 0 < np.count_nonzero(expected) < b            # misclassified (0) and positive estimates both occur
    assert expected[1] < 1e-9                           # (up to float64 rounding)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(certified_l2(images, reconstructions, latents, labels, beta=0.5).numpy(),
                               l2_lower_bounds(images, reconstructions, latents, labels, beta=0.5),
                               rtol=1e-5, atol=1e-6)
