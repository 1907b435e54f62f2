"""Distal adversarials: noise raised to a target class's probability 0.9 (momentum steps)."""

import numpy as np
import pytest
import tensorflow as tf

from abs_tf.attacks.counting import CountingModel
from abs_tf.attacks.decision import distal_adversarials
from abs_tf.attacks.linear import random_linear_model
from abs_tf.models.abs.model import ABS, latent_samples
from abs_tf.models.abs.vae import build_decoder
from abs_tf.models.preprocessing import BINARIZE


@pytest.fixture(scope="module")
def linear():
    return random_linear_model(seed=1, column_norm=5.0)


@pytest.mark.parametrize("gradient", ["model", "estimated"])
def test_a_linear_softmax_model_reaches_high_confidence_on_noise(linear, gradient):
    targets = np.arange(10)
    result = distal_adversarials(linear, targets, steps=100, learning_rate=0.01, gradient=gradient, samples=20)
    assert result.reached.all() and result.reached_fraction == 1.0
    probabilities = tf.nn.softmax(linear(result.images)).numpy()          # the verification, redone
    np.testing.assert_allclose(result.probabilities, probabilities, atol=1e-6)
    assert np.all(result.confidence >= 0.9) and result.mean_confidence >= 0.9
    assert result.images.min() >= 0 and result.images.max() <= 1
    # Queries per image: a probability per step taken and at the stop, a gradient per step
    # (2 x samples for estimated ones; one more where the batch's gradient was computed in the
    # step the image stopped), and the final evaluation; in total what the model saw.
    per_gradient = 40 if gradient == "estimated" else 1
    extra = result.queries - ((result.steps + 1) + result.steps * per_gradient + 1)
    assert set(np.unique(extra)) <= {0, per_gradient}
    counted = CountingModel(linear)
    again = distal_adversarials(counted, targets, steps=100, learning_rate=0.01, gradient=gradient, samples=20)
    np.testing.assert_array_equal(again.images, result.images)
    assert again.queries.sum() == counted.queries
    # Weakened: no steps; uniform noise is not a confident member of every class.
    weak = distal_adversarials(linear, targets, steps=0)
    assert weak.reached_fraction < 1.0
    np.testing.assert_array_equal(weak.queries, 2)


def test_abs_probabilities_are_the_calibrated_ones():
    tf.keras.utils.set_random_seed(3)
    model = ABS([build_decoder() for _ in range(10)], latent_samples(100), n_steps=2)
    result = distal_adversarials(model, [3, 7], steps=2)
    np.testing.assert_allclose(result.probabilities, model.predict_proba(result.images).numpy(), atol=1e-6)
    np.testing.assert_array_equal(result.steps, [2, 2])
    assert not result.reached.any()


class _BinarizedLinear:
    """A linear model behind a declared binarization (the preprocessing protocol)."""

    preprocessing = BINARIZE

    def __init__(self, linear):
        self.linear = linear

    def logits_after_preprocessing(self, images):
        return self.linear(images)

    def __call__(self, images):
        return self.linear(BINARIZE(images))


def test_a_declared_binarization_is_passed_straight_through(linear):
    result = distal_adversarials(_BinarizedLinear(linear), np.arange(10), steps=100, learning_rate=0.01)
    assert result.reached.all()
    with pytest.raises(ValueError, match="no input gradient"):
        distal_adversarials(lambda images: linear(BINARIZE(images)), np.arange(10), steps=5, learning_rate=0.01)
