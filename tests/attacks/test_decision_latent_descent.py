"""Latent Descent on a small ABS (random decoders, 200 samples, 4 search steps; 11 coarse steps):
verified adversarials on the decision boundary, the Binary ABS variant, exact search counts."""

import numpy as np
import pytest
import tensorflow as tf

from abs_tf.attacks import verify
from abs_tf.attacks.counting import CountingModel
from abs_tf.attacks.decision import LatentDescent, SearchOracle, binary_projection, latent_descent
from abs_tf.attacks.linear import random_linear_model
from abs_tf.models.abs.model import ABS, latent_samples
from abs_tf.models.abs.vae import build_decoder


@pytest.fixture(scope="module")
def small_abs():
    tf.keras.utils.set_random_seed(3)
    return ABS([build_decoder() for _ in range(10)], latent_samples(200), n_steps=4)


@pytest.fixture(scope="module")
def images(mnist_test_small):
    return mnist_test_small[0][:4]


def _labels(model, x):
    return np.argmax(model(x).numpy(), axis=1)     # clean images "correct" by construction


def _at(x, result, amplitudes):
    return np.clip(x + amplitudes[:, None, None, None] * result.directions, 0.0, 1.0)


@pytest.mark.parametrize("binary", [False, True], ids=["abs", "binary_abs"])
def test_latent_descent_adversarials_on_the_boundary(small_abs, images, binary):
    model = small_abs.variant(binary=True) if binary else small_abs
    y = _labels(model, images)
    core = latent_descent(SearchOracle(model.search, model.scalings, y), images, coarse_steps=11, binary=binary)
    assert verify(model, images, y, core.candidates).is_adversarial.all()
    on_line = _at(images, core, core.amplitudes)
    if binary:
        # The result is the binary projection of the point on the line: same binarization, closer.
        np.testing.assert_array_equal(core.candidates, binary_projection(on_line.reshape(4, -1),
                                                                         images.reshape(4, -1)).reshape(images.shape))
        assert np.all(np.linalg.norm((core.candidates - images).reshape(4, -1), axis=1)
                      <= np.linalg.norm((on_line - images).reshape(4, -1), axis=1))
    else:
        np.testing.assert_array_equal(core.candidates, on_line)
    # On the boundary: 2^-10 of the line less is not adversarial (checked by the model itself).
    assert not verify(model, images, y, _at(images, core, core.amplitudes - 2.0 ** -10)).is_adversarial.any()
    assert np.all(core.amplitudes < 1)
    # Weakened (coarse steps only): its first adversarial coarse point overshoots the boundary.
    coarse = latent_descent(SearchOracle(model.search, model.scalings, y), images, coarse_steps=11,
                            binary_search_steps=0, binary=binary)
    assert verify(model, images, y, coarse.candidates).is_adversarial.all()
    assert verify(model, images, y, _at(images, coarse, coarse.amplitudes - 2.0 ** -10)).is_adversarial.all()


def test_latent_descent_through_the_verifier(small_abs, images):
    y = _labels(small_abs, images)
    result = LatentDescent(coarse_steps=11)(small_abs, images, y)
    assert result.is_adversarial.all()
    core = latent_descent(SearchOracle(small_abs.search, small_abs.scalings, y), images, coarse_steps=11)
    np.testing.assert_array_equal(result.adversarials[0], core.candidates)
    # Every search of the attack plus the base class's clean check and verification.
    np.testing.assert_allclose(result.queries.sum(), core.queries.sum() + 2 * len(y))


def test_latent_descent_counts_every_search(small_abs, images):
    y = _labels(small_abs, images)
    counted = CountingModel(small_abs)
    oracle = SearchOracle(counted.search, small_abs.scalings, y, max_batch=4)
    result = latent_descent(oracle, images, coarse_steps=11, binary_search_steps=5)
    assert result.found.all()
    np.testing.assert_array_equal(result.queries, oracle.queries)
    assert counted.counts() == (int(oracle.queries.sum()), 0)
    # Per image: the coarse points up to its first adversarial (>= 2: x itself is not), then 5 halvings.
    coarse = result.queries - 5
    assert np.all(coarse >= 2) and np.all(coarse <= 11)


def test_binary_projection_is_the_release_rule():
    rec = np.array([[0.9, 0.1, 0.7, 0.2]], np.float32)
    img = np.array([[0.6, 0.3, 0.2, 0.8]], np.float32)
    np.testing.assert_array_equal(binary_projection(rec, img), np.float32([[0.6, 0.3, 0.5, 0.49999]]))


def test_latent_descent_needs_abs():
    with pytest.raises(TypeError, match="ABS"):
        LatentDescent()(random_linear_model(0), np.full((1, 28, 28, 1), 0.5, np.float32), [0])
