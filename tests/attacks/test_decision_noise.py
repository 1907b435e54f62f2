"""Additive Gaussian (L2) and uniform (L∞) noise: verified adversarials at the reported
amplitude, which is the decision boundary along the noise direction within the bisection's
precision (a coarse-only search fails that)."""

import numpy as np
import pytest
import tensorflow as tf

from abs_tf.attacks import verify
from abs_tf.attacks.counting import CountingModel
from abs_tf.attacks.decision import (AdditiveGaussianNoise, AdditiveUniformNoise, DecisionOracle, additive_noise,
                                     image_keys)
from abs_tf.attacks.decision.noise import SCALES
from abs_tf.attacks.linear import linear_problem


@pytest.fixture(scope="module")
def problem():
    return linear_problem(seed=2, n=6)


def _oracle(model, y):
    counted = CountingModel(model)
    return DecisionOracle(lambda images: tf.argmax(counted(images), axis=-1), y), counted


def _at(x, result, scale):
    return np.clip(x + scale * result.amplitudes[:, None, None, None] * result.directions, 0.0, 1.0)


@pytest.mark.parametrize("distribution, norm", [("gaussian", "l2"), ("uniform", "linf")])
def test_noise_adversarial_at_the_reported_amplitude(problem, distribution, norm):
    model, x, y = problem
    keys = np.arange(6, dtype=np.uint32)
    oracle, counted = _oracle(model, y)
    result = additive_noise(oracle, x, keys, distribution=distribution, repetitions=4)
    assert result.found.all()
    np.testing.assert_array_equal(result.candidates, _at(x, result, 1.0))
    checked = verify(model, x, y, result.candidates)
    assert checked.is_adversarial.all()
    assert np.all(checked.distances[norm] <= result.amplitudes * (1 + 1e-6))
    # The boundary along the direction: 0.1 % less noise is not adversarial.
    assert not verify(model, x, y, _at(x, result, 1 - 1e-3)).is_adversarial.any()
    # Queries: exact per image; <= repetitions x (grid + bisections).
    np.testing.assert_array_equal(result.queries, oracle.queries)
    assert counted.counts()[0] == oracle.queries.sum()
    assert np.all(result.queries <= 4 * (len(SCALES[norm]) + 10))
    # Weakened (coarse grid only): the reported amplitude overshoots the boundary.
    coarse = additive_noise(_oracle(model, y)[0], x, keys, distribution=distribution, repetitions=4,
                            bisection_steps=0)
    assert verify(model, x, y, _at(x, coarse, 1 - 1e-3)).is_adversarial.any()


@pytest.mark.parametrize("attack", [AdditiveGaussianNoise(repetitions=3), AdditiveUniformNoise(repetitions=3)],
                         ids=repr)
def test_noise_attacks_through_the_verifier(problem, attack):
    model, x, y = problem
    result = attack(model, x, y, seed=4)
    assert result.is_adversarial.all()
    core = additive_noise(_oracle(model, y)[0], x, image_keys(x, 4), distribution=attack.distribution,
                          repetitions=3)
    np.testing.assert_allclose(result.adversarials[0], core.candidates, atol=0)
