"""Estimated gradients, straight-through gradients, and query counting."""

import numpy as np
import pytest
import tensorflow as tf

from abs_tf import attacks
from abs_tf.attacks.linear import linear_problem
from abs_tf.models.preprocessing import BINARIZE, binarize


@pytest.fixture(scope="module")
def problem():
    return linear_problem(seed=4, n=3)


def _gradient(model, x, cls=3):
    xt = tf.constant(x)
    with tf.GradientTape() as tape:
        tape.watch(xt)
        out = tf.reduce_sum(model(xt)[:, cls])
    grad = tape.gradient(out, xt, unconnected_gradients=tf.UnconnectedGradients.ZERO)
    return grad.numpy().reshape(len(x), -1)


def test_coordinate_estimate_is_exact_on_linear_model_even_at_box_edges(problem):
    model, x, _ = problem
    x = x.copy()
    x[:, :3] = 0.0
    x[:, 3:6] = 1.0  # probes get clipped here
    est = attacks.EstimatedGradients(model, method="coordinates", batch_size=1000)
    g = _gradient(est, x)
    np.testing.assert_allclose(g, np.tile(model.weights[:, 3], (3, 1)), rtol=1e-2, atol=2e-2)


def test_gaussian_estimate_converges_to_the_gradient(problem):
    model, x, _ = problem
    true = model.weights[:, 3]
    cos = []
    for samples in (50, 1000):
        g = _gradient(attacks.EstimatedGradients(model, samples=samples, seed=1), x)
        cos.append(np.mean(g @ true / np.linalg.norm(g, axis=1) / np.linalg.norm(true)))
    # Theory for antithetic Gaussian probes in d = 784: cos ~ sqrt(N / (N + d)).
    assert 0.15 < cos[0] < 0.35
    assert cos[1] > 0.7


def test_estimated_gradient_counts_its_queries(problem):
    model, x, y = problem
    est = attacks.EstimatedGradients(model, samples=10)
    result = attacks.FGSM()(est, x, y, epsilons=[0.01])
    # per image: clean check, forward of the gradient pass, verification; one gradient = 2 x 10 probes.
    np.testing.assert_array_equal(result.forward_queries, 3)
    np.testing.assert_array_equal(result.gradient_queries, 1)
    np.testing.assert_array_equal(result.queries, 3 + 20)
    plain = attacks.FGSM()(model, x, y, epsilons=[0.01, 0.02])
    np.testing.assert_array_equal(plain.forward_queries, 1 + 2 * 2)
    np.testing.assert_array_equal(plain.queries, 1 + 2 * 3)


def test_pgd_with_estimated_gradients_within_10_percent(problem):
    model, x, y = problem
    x, y = x[:2], y[:2]
    analytic, _, _ = model.minimal_adversarials(x, y, "l2")
    exact_steps = attacks.PGD(norm="l2", steps=5, rel_stepsize=0.3, random_start=False)
    noisy_steps = attacks.PGD(norm="l2", steps=30, rel_stepsize=0.1, random_start=False)
    for est, attack, bound in [(attacks.EstimatedGradients(model, method="coordinates"), exact_steps, 1.02),
                               (attacks.EstimatedGradients(model, samples=400, seed=0), noisy_steps, 1.10)]:
        best = attacks.minimize(attack, est, x, y, grid=(0.1, 0.2, 0.4, 0.8), bisection_steps=6)
        ratio = best.distances["l2"] / analytic
        assert ratio.min() >= 1 - 1e-4 and ratio.max() <= bound, (est, ratio)
        assert np.all(best.queries > 1000)  # estimated gradients are charged what they cost


class _Binarized:
    """A model declaring a binarizing front end (the preprocessing protocol), network linear."""

    preprocessing = BINARIZE

    def __init__(self, network):
        self.network = network
        self.name = "binarized"

    def __call__(self, images):
        return self.network(binarize(images))

    def logits_after_preprocessing(self, images):
        return self.network(images)


def test_straight_through_differentiates_behind_the_declared_front_end():
    network = attacks.random_linear_model(5)
    model = _Binarized(network)
    st = attacks.StraightThrough(model)
    x = np.random.default_rng(0).uniform(0, 1, (2, 28, 28, 1)).astype(np.float32)
    np.testing.assert_allclose(st(x).numpy(), model(x).numpy(), rtol=1e-6)   # the model's own decision
    np.testing.assert_allclose(_gradient(st, x), np.tile(network.weights[:, 3], (2, 1)), rtol=1e-6)
    assert not np.any(_gradient(model, x))  # the model itself has no gradient
    with pytest.raises(ValueError, match="declares no preprocessing"):
        attacks.StraightThrough(network)
    with pytest.raises(ValueError, match="do not pass another"):
        attacks.StraightThrough(model, preprocess=binarize)
    explicit = attacks.StraightThrough(network, preprocess=binarize)  # a network expecting binary images
    np.testing.assert_allclose(explicit(x).numpy(), model(x).numpy(), rtol=1e-6)


def test_zero_gradient_is_a_failed_attack_not_robustness(problem):
    model, x, y = problem
    blocked = lambda images: model(tf.stop_gradient(images))  # noqa: E731
    for attack, kwargs in [(attacks.PGD(norm="linf", random_start=False, steps=3), {"epsilons": [0.01, 0.5]}),
                           (attacks.FGSM(), {"epsilons": [0.5]}), (attacks.DeepFool(), {}),
                           (attacks.DDN(steps=5), {}), (attacks.FMN(steps=5), {}),
                           (attacks.CarliniWagnerL2(steps=5, binary_search_steps=1), {})]:
        result = attack(blocked, x, y, **kwargs)
        assert not result.is_adversarial.any(), attack
        assert result.no_gradient.all(), attack
        np.testing.assert_array_equal(result.robust_accuracy, 0.0)  # never counted robust
        assert not result.full_success
    best = attacks.minimize(attacks.FGSM(), blocked, x, y)
    assert best.no_gradient.all() and best.accuracy(0.3) == 0.0 and best.median() == 0.0
    # NaN gradients are failures too.
    @tf.custom_gradient
    def nan_gradient(images):
        return tf.identity(images), lambda upstream: upstream * np.nan

    result = attacks.PGD(norm="l2", steps=2)(lambda images: model(nan_gradient(images)), x, y, epsilons=[0.1])
    assert result.no_gradient.all() and np.all(np.isfinite(result.adversarials))
