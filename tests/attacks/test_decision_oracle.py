"""The decision oracle under every decision-based attack: batching, exact per-image counts,
budgets, and per-image random streams (results independent of the batch)."""

import numpy as np
import pytest
import tensorflow as tf

from abs_tf.attacks.counting import CountingModel
from abs_tf.attacks.criteria import TargetedMisclassification
from abs_tf.attacks.decision import DecisionOracle, Pointwise, image_keys
from abs_tf.attacks.decision.threshold import threshold_problem


def _classify(model):
    return lambda images: tf.argmax(model(images), axis=-1)


def test_oracle_batches_counts_per_image_and_decides():
    model, x, y, _, _ = threshold_problem(n=3)
    counted = CountingModel(model)
    oracle = DecisionOracle(_classify(counted), y, max_batch=4)
    fired = x.copy().reshape(3, -1)
    fired[:, model.pixels] = 0.0                                   # every S pixel off: class 1
    index = np.array([0, 2, 2, 1, 2, 0, 0, 2, 2, 1])
    candidates = np.where((np.arange(10) % 2 == 0)[:, None], fired[index], x.reshape(3, -1)[index])
    ok = oracle(index, candidates.reshape(-1, 28, 28, 1))
    np.testing.assert_array_equal(ok, np.arange(10) % 2 == 0)
    np.testing.assert_array_equal(oracle.queries, [3, 2, 5])
    assert oracle.calls == 3                                        # 10 candidates, 4 per call
    assert counted.counts() == (10, 0)                              # the model saw exactly these
    targeted = DecisionOracle(_classify(model), np.ones(3, np.int64), TargetedMisclassification())
    np.testing.assert_array_equal(targeted(index, candidates.reshape(-1, 28, 28, 1)), ok)


def test_oracle_budget_is_enforced():
    model, x, y, _, _ = threshold_problem(n=2)
    oracle = DecisionOracle(_classify(model), y, max_queries=3)
    oracle([0, 0, 1], np.concatenate([x[:1], x[:1], x[1:]]))
    np.testing.assert_array_equal(oracle.remaining([0, 1]), [1, 2])
    np.testing.assert_array_equal(oracle.affordable([0, 1, 0, 1, 1]), [True, True, False, True, False])
    with pytest.raises(ValueError, match="budget"):
        oracle([0, 0], np.concatenate([x[:1], x[:1]]))


def test_keys_depend_on_content_and_seed_only():
    _, x, _, _, _ = threshold_problem(n=3)
    keys = image_keys(x, 5)
    np.testing.assert_array_equal(image_keys(x[[2, 0]], 5), keys[[2, 0]])
    assert not np.array_equal(image_keys(x, 6), keys)


def test_results_do_not_depend_on_the_batch():
    model, x, y, _, _ = threshold_problem(n=3)
    attack = Pointwise(binary_search_steps=3)
    full = attack(model, x, y, seed=2)
    part = attack(model, x[[2, 0]], y[[2, 0]], seed=2)
    np.testing.assert_array_equal(part.adversarials[0], full.adversarials[0][[2, 0]])
    other_seed = attack(model, x, y, seed=3)
    assert not np.array_equal(other_seed.adversarials, full.adversarials)
