"""The Boundary attack on the linear answer key (`abs_tf.attacks.linear`): within its budget it
gets to 1.1x the exact minimal L2; a tiny budget does not."""

import numpy as np
import pytest
import tensorflow as tf

from abs_tf.attacks import verify
from abs_tf.attacks.counting import CountingModel
from abs_tf.attacks.decision import Boundary, DecisionOracle, blended_noise, boundary
from abs_tf.attacks.linear import linear_problem

LOWER = 1 - 1e-4  # float32 slack: nothing verified can beat the exact minimum


@pytest.fixture(scope="module")
def problem():
    model, x, y = linear_problem(seed=0, n=3)
    exact, _, delta = model.minimal_adversarials(x, y, "l2")
    assert (x + delta).min() >= 0 and (x + delta).max() <= 1, "box would bind: analytic answer invalid"
    return model, x, y, exact


@pytest.mark.parametrize("steps, passes", [(2000, True), (200, False)], ids=["budget", "weakened-tiny-budget"])
def test_boundary_reaches_the_minimal_l2(problem, steps, passes):
    model, x, y, exact = problem
    result = Boundary(steps=steps, directions=5)(model, x, y, seed=0)
    assert result.is_adversarial.all()
    ratio = result.distances["l2"][0] / exact
    assert ratio.min() >= LOWER
    assert (ratio.max() <= 1.1) == passes, ratio


def test_boundary_counts_queries_exactly_and_keeps_its_budget(problem):
    model, x, y, _ = problem
    keys = np.arange(3, dtype=np.uint32)
    counted = CountingModel(model)
    oracle = DecisionOracle(lambda images: tf.argmax(counted(images), axis=-1), y, max_queries=1000)
    start = blended_noise(oracle, x, keys)
    spent = oracle.queries.copy()
    result = boundary(oracle, x, start.candidates, keys, steps=10_000, directions=3)
    np.testing.assert_array_equal(result.queries, oracle.queries - spent)
    assert counted.counts()[0] == oracle.queries.sum()
    # Each step costs 2 x directions (proposals and orthogonal candidates): the budget stops it.
    assert np.all(oracle.queries <= 1000) and np.all(oracle.queries > 1000 - 6)
    assert np.all(result.queries % 6 == 0)
    assert verify(model, x, y, result.candidates).is_adversarial.all()
    d_start = np.linalg.norm((start.candidates - x).reshape(3, -1), axis=1)
    d_end = np.linalg.norm((result.candidates - x).reshape(3, -1), axis=1)
    assert np.all(d_end < d_start)
