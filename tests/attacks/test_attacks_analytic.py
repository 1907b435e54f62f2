"""Known answers: on a linear classifier the minimal adversarial is analytic.

L2: min_c (z_y - z_c) / ||w_y - w_c||_2;  L∞: min_c (z_y - z_c) / ||w_y - w_c||_1. The test images
are built so that the unconstrained optimum lies inside [0, 1] (checked), making these the
exact optima: every verified adversarial must be at least this far (a distance or verifier
bug shows up as a ratio < 1), and a working attack gets within 5 %.
"""

import numpy as np
import pytest
import tensorflow as tf

from abs_tf import attacks
from abs_tf.attacks.linear import linear_problem

LOWER = 1 - 1e-4  # float32 slack


@pytest.fixture(scope="module")
def problem():
    tf.random.set_seed(0)
    model, x, y = linear_problem(seed=0, n=6)
    for norm in ("l2", "linf"):
        _, _, delta = model.minimal_adversarials(x, y, norm)
        assert (x + delta).min() >= 0 and (x + delta).max() <= 1, "box would bind: analytic answer invalid"
    return model, x, y


@pytest.fixture(scope="module")
def binary_problem():
    model, x, y = linear_problem(seed=3, n=6, binary=True)
    assert set(y) <= {0, 1}
    return model, x, y


def _ratios(attack, problem, **kwargs):
    model, x, y = problem
    best = attacks.minimize(attack, model, x, y, **kwargs)
    analytic, _, _ = model.minimal_adversarials(x, y, attack.norm)
    assert best.is_adversarial.all(), f"{attack!r} failed on some images"
    # Stored distances are those of the returned images, which are adversarial.
    again = attacks.verify(model, x, y, best.adversarials)
    assert again.is_adversarial.all()
    np.testing.assert_allclose(again.distances[attack.norm], best.distances[attack.norm], rtol=1e-5)
    return best.distances[attack.norm] / analytic


@pytest.mark.parametrize("attack", [attacks.FGSM(), attacks.FGM(norm="l2")], ids=repr)
def test_single_step_is_exact_on_binary_linear_model(attack, binary_problem):
    ratio = _ratios(attack, binary_problem, bisection_steps=16)
    assert ratio.min() >= LOWER
    assert ratio.max() <= 1.001


def test_fgsm_at_the_analytic_epsilon(binary_problem):
    model, x, y = binary_problem
    eps, _, _ = model.minimal_adversarials(x, y, "linf")
    above = attacks.FGSM()(model, x, y, epsilons=[0.0])  # warm-up / shape
    assert not above.is_adversarial.any()
    for i in range(len(y)):
        r = attacks.FGSM()(model, x[i:i + 1], y[i:i + 1], epsilons=[eps[i] * 0.999, eps[i] * 1.001])
        np.testing.assert_array_equal(r.is_adversarial[:, 0], [False, True])


@pytest.mark.parametrize("attack", [
    attacks.PGD(norm="l2", steps=40, rel_stepsize=0.1),
    attacks.PGD(norm="linf", steps=20, rel_stepsize=0.1),
    attacks.CarliniWagnerL2(steps=1000, stepsize=1e-3),
    attacks.DeepFool(norm="l2"),
    attacks.DeepFool(norm="linf"),
    attacks.MIM(norm="linf"),
    attacks.BIM(norm="l2"),
], ids=repr)
def test_minimal_adversarial_within_5_percent(attack, problem):
    ratio = _ratios(attack, problem)
    assert ratio.min() >= LOWER, f"{attack!r} beat the optimum: distance or verification bug"
    assert ratio.max() <= 1.05, ratio


def test_pgd_never_leaves_box_or_ball(problem):
    model, x, y = problem
    x = x.copy()
    x[:, :4] = 0.0
    x[:, 4:8] = 1.0  # pixels at the box edges
    for attack in (attacks.PGD(norm="linf"), attacks.PGD(norm="l2")):
        eps = [0.3] if attack.norm == "linf" else [3.0]
        raw = attack.run(model, tf.constant(x), tf.constant(y), tf.fill([6], eps[0])).numpy()
        assert raw.min() >= 0 and raw.max() <= 1, attack
        assert attacks.distances(x, raw)[attack.norm].numpy().max() <= eps[0] * (1 + 1e-5)
