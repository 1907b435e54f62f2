"""Our CleverHans-based attacks against CleverHans' own functions, and our own CW-L2 and SPSA
(CleverHans' break under Keras 3) on a Keras 3 model."""

import keras
import numpy as np
import pytest
import tensorflow as tf
from cleverhans.tf2.attacks.basic_iterative_method import basic_iterative_method
from cleverhans.tf2.attacks.fast_gradient_method import fast_gradient_method
from cleverhans.tf2.attacks.momentum_iterative_method import momentum_iterative_method

from abs_tf import attacks
from abs_tf.attacks.linear import linear_problem


@pytest.fixture(scope="module")
def problem():
    model, x, y = linear_problem(seed=1, n=4, strength=(0.2, 0.4))  # moderate logits
    return model, x, y


def _raw(attack, model, x, y, eps):
    return attack.run(model, tf.constant(x), tf.constant(y), tf.fill([len(y)], eps)).numpy()


@pytest.mark.parametrize("ours,theirs", [(attacks.BIM, basic_iterative_method), (attacks.MIM, momentum_iterative_method)],
                         ids=["bim", "mim"])
@pytest.mark.parametrize("norm,eps", [("l2", 0.3), ("linf", 0.02)])
def test_iterative_attacks_equal_cleverhans(problem, ours, theirs, norm, eps):
    model, x, y = problem
    attack = ours(norm=norm, steps=5, rel_stepsize=0.3, early_stop=False, loss="crossentropy")
    mine = _raw(attack, model, x, y, eps)
    reference = theirs(model, x, eps, 0.3 * eps, 5, 2 if norm == "l2" else np.inf, clip_min=0.0, clip_max=1.0,
                       y=y, sanity_checks=False).numpy()
    assert np.abs(mine - x).max() > 0.5 * (eps if norm == "linf" else eps / 28)  # it moved
    np.testing.assert_allclose(mine, reference, atol=1e-5)


def test_fgsm_equals_cleverhans_and_per_image_epsilon(problem):
    model, x, y = problem
    eps = np.array([0.01, 0.02, 0.03, 0.04], np.float32)
    ours = attacks.FGSM(loss="crossentropy").run(model, tf.constant(x), tf.constant(y), tf.constant(eps)).numpy()
    for i, e in enumerate(eps):
        theirs = fast_gradient_method(model, x[i:i + 1], float(e), np.inf, clip_min=0.0, clip_max=1.0, y=y[i:i + 1])
        np.testing.assert_allclose(ours[i:i + 1], theirs.numpy(), atol=1e-6)


@pytest.fixture(scope="module")
def keras_problem():
    model, x, y = linear_problem(seed=2, n=3)
    net = keras.Sequential([keras.Input((28, 28, 1)), keras.layers.Flatten(), keras.layers.Dense(10)])
    net.layers[-1].set_weights([model.weights, model.bias])
    np.testing.assert_allclose(net(x).numpy(), model(x).numpy(), rtol=1e-4, atol=1e-3)
    return net, model, x, y


def test_carlini_wagner_runs_on_keras3_model(keras_problem):
    net, linear, x, y = keras_problem
    result = attacks.CarliniWagnerL2(steps=300, stepsize=3e-3, binary_search_steps=4)(net, x, y)
    analytic, _, _ = linear.minimal_adversarials(x, y, "l2")
    assert result.is_adversarial.all()
    ratio = result.distances["l2"][0] / analytic
    assert ratio.min() >= 1 - 1e-3 and ratio.max() <= 1.15, ratio
    assert np.all(result.queries > 300)


def test_spsa_runs_on_keras3_model(keras_problem):
    net, linear, x, y = keras_problem
    analytic, _, _ = linear.minimal_adversarials(x, y, "linf")
    result = attacks.SPSA(steps=20, samples=32)(net, x, y, epsilons=[0.5 * analytic.min(), 3 * analytic.max()])
    assert not result.is_adversarial[0].any()  # below the optimum: impossible
    assert result.is_adversarial[1].all()
    assert result.adversarials.min() >= 0 and result.adversarials.max() <= 1
    assert np.all(result.distances["linf"][1] <= 3 * analytic.max() + 1e-6)
    # per image: 1 clean check; per epsilon and step 32 probes + 1 early-stop check; 1 verification
    assert np.all(result.queries >= 1 + 2 * (1 + 1) + 32) and np.all(result.queries <= 1 + 2 * (20 * 33 + 1 + 1))
    assert not result.gradient_queries.any()  # gradient-free
