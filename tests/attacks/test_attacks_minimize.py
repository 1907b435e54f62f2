"""The minimal-perturbation search, line search, transfer attack and best-of-attacks."""

import numpy as np

from abs_tf import attacks
from abs_tf.attacks.linear import linear_problem
from abs_tf.attacks.results import Best


def _fake_verified(success, dist):
    z = np.zeros((len(success), 28, 28, 1), np.float32)
    d = {n: np.asarray(dist, np.float32) for n in attacks.NORMS}
    return attacks.Verified(z, np.asarray(success), np.zeros(len(success), np.int64), d), None


def test_bracket_search_finds_each_threshold_batched():
    thresholds = np.array([0.013, 0.3, 0.77, 5.0])  # last one above the grid: never found
    calls = []

    def evaluate(idx, t):
        calls.append(len(idx))
        return _fake_verified(t >= thresholds[idx], t)

    best = Best(np.zeros((4, 28, 28, 1), np.float32), "linf")
    attacks.bracket_search(evaluate, np.arange(4), (0.01, 0.1, 0.5, 1.0), 12, best)
    np.testing.assert_allclose(best.distances["linf"][:3], thresholds[:3], rtol=1e-3)
    assert not best.found[3] and np.isinf(best.distances["linf"][3])
    assert calls[:4] == [4, 4, 3, 2]  # images leave the grid at their first success
    assert max(calls[4:]) == 3        # bisection only for bracketed images


def test_minimize_failure_is_inf_and_original_returned():
    model, x, y = linear_problem(seed=6, n=2)
    best = attacks.minimize(attacks.FGSM(), model, x, y, grid=(1e-4, 2e-4))  # far too small
    assert not best.is_adversarial.any()
    assert np.all(np.isinf(best.distances["linf"]))
    np.testing.assert_array_equal(best.adversarials, x)
    assert best.accuracy(0.3) == 1.0 and best.median() == np.inf


def test_line_search_and_best_of():
    model, x, y = linear_problem(seed=7, n=3)
    _, _, delta = model.minimal_adversarials(x, y, "l2")
    found = attacks.line_search(model, x, y, delta * 0.5, bisection_steps=14)  # true scale t = 2
    analytic = np.linalg.norm(delta.reshape(3, -1), axis=1)
    np.testing.assert_allclose(found.distances["l2"], analytic, rtol=1e-3)
    worse = attacks.line_search(model, x, y, delta + 0.01 * np.sign(delta), bisection_steps=14)
    combined = attacks.best_of([worse, found], "l2", model=model, images=x, labels=y)
    np.testing.assert_allclose(combined.distances["l2"], found.distances["l2"])
    assert (worse.distances["l2"] > found.distances["l2"]).all()
    np.testing.assert_array_equal(combined.queries, worse.queries + found.queries + 1)  # + final verification


def test_transfer_attack_line_searches_on_the_target():
    target, x, y = linear_problem(seed=8, n=4)
    rng = np.random.default_rng(0)
    substitute = attacks.LinearModel(target.weights + 0.3 * rng.normal(size=target.weights.shape),
                                     target.bias, name="noisy")
    attack = attacks.Transfer(substitute=substitute, attack=attacks.DeepFool(norm="l2"))
    assert attack.norm == "l2" and repr(attack).startswith("Transfer(substitute=noisy")
    best = attacks.minimize(attack, target, x, y)
    analytic, _, _ = target.minimal_adversarials(x, y, "l2")
    assert best.is_adversarial.all()
    ratio = best.distances["l2"] / analytic
    assert ratio.min() >= 1 - 1e-4 and ratio.max() < 1.5
    # With the target as its own substitute, transfer is DeepFool followed by the line search
    # that removes DeepFool's overshoot.
    own = attacks.minimize(attacks.Transfer(substitute=target), target, x, y)
    np.testing.assert_allclose(own.distances["l2"] / analytic, 1.0, atol=2e-3)
