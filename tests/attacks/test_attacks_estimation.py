"""Estimated gradients, straight-through gradients, and query counting."""

import numpy as np
import pytest
import tensorflow as tf

from abs_tf import attacks
from abs_tf.attacks.linear import linear_problem


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
    # per image: 1 forward (gradient pass) + 2 x 10 probes + 1 verification.
    assert result.queries == 22
    assert attacks.FGSM()(model, x, y, epsilons=[0.01, 0.02]).queries == 2 * 3


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
        assert best.queries > 1000  # estimated gradients are charged what they cost


def test_straight_through_binarization():
    model = attacks.random_linear_model(5)
    st = attacks.StraightThrough(model)
    x = np.random.default_rng(0).uniform(0, 1, (2, 28, 28, 1)).astype(np.float32)
    np.testing.assert_allclose(st(x).numpy(), model(attacks.binarize(x)).numpy(), rtol=1e-6)
    np.testing.assert_allclose(_gradient(st, x), np.tile(model.weights[:, 3], (2, 1)), rtol=1e-6)
    # Without BPDA the binarized model has no gradient at all: attacks get nowhere.
    plain = lambda images: model(attacks.binarize(images))  # noqa: E731
    assert not np.any(_gradient(plain, x))


def test_zero_gradient_model_gives_no_adversarial_and_no_crash(problem):
    model, x, y = problem
    blocked = lambda images: model(tf.stop_gradient(images))  # noqa: E731
    result = attacks.PGD(norm="linf", random_start=False, steps=3)(blocked, x, y, epsilons=[0.01])
    assert not result.is_adversarial.any()
    np.testing.assert_allclose(result.adversarials[0], x)
