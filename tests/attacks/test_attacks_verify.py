"""The verifier: the only place that decides success (clipping, projection, re-classification)."""

import numpy as np
import pytest
import tensorflow as tf

from abs_tf import attacks
from abs_tf.attacks.linear import linear_problem
from abs_tf.attacks.verify import project_l1


@pytest.fixture(scope="module")
def problem():
    return linear_problem(seed=0, n=4)


def test_distances_known_values():
    x = np.zeros((2, 28, 28, 1), np.float32)
    p = x.copy()
    p[0, 0, 0, 0], p[0, 1, 1, 0] = 0.3, 0.4          # l0 2, l2 0.5, linf 0.4
    p[1, 5, 5, 0] = 0.5 * attacks.L0_TOLERANCE       # below the l0 tolerance
    d = attacks.distances(x, p)
    np.testing.assert_allclose(d["l0"].numpy(), [2, 0])
    np.testing.assert_allclose(d["l2"].numpy(), [0.5, 0.5 * attacks.L0_TOLERANCE], rtol=1e-5)
    np.testing.assert_allclose(d["linf"].numpy(), [0.4, 0.5 * attacks.L0_TOLERANCE], rtol=1e-5)


@pytest.mark.parametrize("norm,eps", [("linf", 0.05), ("l2", 0.5), ("l0", 3)])
def test_project_lands_in_ball_and_box(norm, eps):
    rng = np.random.default_rng(1)
    x = rng.uniform(0, 1, (3, 28, 28, 1)).astype(np.float32)
    c = x + rng.normal(0, 0.5, x.shape).astype(np.float32)
    p = attacks.project(x, c, norm, eps).numpy()
    assert p.min() >= 0 and p.max() <= 1
    d = attacks.distances(x, p)[norm].numpy()
    assert np.all(d <= eps * (1 + 1e-5))
    assert np.all(d >= eps * 0.9)  # far candidates end on the boundary, not at the origin
    # A point already inside stays put.
    inside = attacks.project(x, p, norm, eps).numpy()
    np.testing.assert_allclose(inside, p, atol=1e-6)


def test_l1_projection_is_the_euclidean_one():
    rng = np.random.default_rng(2)
    v = rng.normal(0, 0.3, (3, 784)).astype(np.float32)
    eps = np.array([2.0, 5.0, 1e4], np.float32)  # the last one is inside: unchanged
    p = project_l1(v, eps).numpy()
    for row, e, out in zip(v, eps, p):
        lo, hi = 0.0, np.abs(row).max()  # soft threshold theta with sum(max(|v| - theta, 0)) = eps
        for _ in range(60):
            theta = (lo + hi) / 2
            lo, hi = (theta, hi) if np.maximum(np.abs(row) - theta, 0).sum() > e else (lo, theta)
        expected = row if np.abs(row).sum() <= e else np.sign(row) * np.maximum(np.abs(row) - hi, 0)
        np.testing.assert_allclose(out, expected, atol=1e-5)
        assert np.abs(out).sum() <= e * (1 + 1e-5)


def test_l0_projection_keeps_largest_changes():
    x = np.full((1, 28, 28, 1), 0.5, np.float32)
    c = x.copy()
    c[0, 0, :5, 0] += np.array([0.1, -0.4, 0.2, 0.3, -0.05], np.float32)
    p = attacks.project(x, c, "l0", 2).numpy()
    np.testing.assert_allclose(p[0, 0, :5, 0] - 0.5, [0, -0.4, 0, 0.3, 0], atol=1e-6)


def test_verifier_rejects_forged_adversarial(problem):
    model, x, y = problem
    v = attacks.verify(model, x, y, x + 1e-3)  # still classified correctly
    assert not v.is_adversarial.any()
    np.testing.assert_array_equal(v.predictions, y)


def test_verifier_handles_nan_and_range(problem):
    model, x, y = problem
    c = x.copy()
    c[0] = np.nan
    c[1] = 5.0  # out of range: clipped to all ones
    v = attacks.verify(model, x, y, c)
    assert not v.is_adversarial[0]
    np.testing.assert_array_equal(v.adversarials[0], x[0])
    assert v.adversarials.min() >= 0 and v.adversarials.max() <= 1
    np.testing.assert_array_equal(v.adversarials[1], np.ones_like(x[1]))


class _Forger(attacks.FixedEpsilonAttack):
    """Claims far-away, out-of-range and unchanged images: the base class must not be fooled."""

    norm = "linf"

    def __init__(self):
        self._store()

    def run(self, model, images, labels, epsilon, seed=0, criterion=attacks.MISCLASSIFICATION):
        far = images + 3.0 * tf.sign(attacks.randomness.normal(attacks.randomness.image_keys(images, seed),
                                                                [28, 28, 1]))  # far outside eps and [0, 1]
        return tf.concat([far[:2], images[2:]], axis=0)


def test_attack_cannot_report_unverified_success(problem):
    model, x, y = problem
    ref, _, _ = model.minimal_adversarials(x, y, "linf")
    result = _Forger()(model, x, y, epsilons=[0.0, float(ref.min()) / 2, 1.0])
    assert result.adversarials.shape == (3, 4, 28, 28, 1)
    assert result.adversarials.min() >= 0 and result.adversarials.max() <= 1
    # Within eps: projected; below the analytic minimum nothing can be adversarial.
    assert np.all(result.distances["linf"] <= np.array([0.0, ref.min() / 2, 1.0])[:, None] + 1e-6)
    assert not result.is_adversarial[:2].any()
    assert not result.is_adversarial[:, 2:].any()  # unchanged images are never adversarial
    # Re-classification agrees with the stored predictions.
    for e in range(3):
        np.testing.assert_array_equal(np.argmax(model(result.adversarials[e]).numpy(), 1), result.predictions[e])
    np.testing.assert_array_equal(result.is_adversarial, result.predictions != y[None])




def test_input_checks(problem):
    model, x, y = problem
    with pytest.raises(ValueError, match="epsilons"):
        attacks.FGSM()(model, x, y, epsilons=[-0.1])
    with pytest.raises(ValueError, match="shape"):
        attacks.FGSM()(model, x[..., 0], y, epsilons=[0.1])
    with pytest.raises(ValueError):
        attacks.PGD(norm="l1")
    with pytest.raises(tf.errors.InvalidArgumentError):
        attacks.FGSM()(model, x * 2 + 0.5, y, epsilons=[0.1])


def test_registry_builds_every_attack_with_usable_repr():
    substitute = attacks.random_linear_model(1)
    for name, factory in attacks.ATTACKS.items():
        attack = factory(substitute=substitute) if name == "transfer" else factory()
        assert isinstance(attack, attacks.Attack), name
        assert attack.norm in attacks.NORMS
        assert repr(attack).startswith(type(attack).__name__ + "(")
    assert "rel_stepsize=0.1" in repr(attacks.PGD(norm="l2", rel_stepsize=0.1))
    for name, norm in [("ddn_l2", "l2"), ("fmn_l0", "l0"), ("fmn_l2", "l2"), ("fmn_linf", "linf")]:
        assert attacks.ATTACKS[name]().norm == norm
