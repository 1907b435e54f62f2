"""Salt-and-pepper and Pointwise (L0) on the threshold model, whose minimal L0 is known
(`abs_tf.attacks.decision.threshold`); each check also fails for a weakened variant."""

import numpy as np
import pytest
import tensorflow as tf

from abs_tf.attacks import verify
from abs_tf.attacks.counting import CountingModel
from abs_tf.attacks.decision import DecisionOracle, Pointwise, SaltAndPepper, pointwise, salt_and_pepper
from abs_tf.attacks.decision.threshold import threshold_problem


@pytest.fixture(scope="module")
def problem():
    model, x, y, m, l2 = threshold_problem(seed=0, n=4, k=20, deficit=3.3)
    np.testing.assert_array_equal(model.minimal_l0(x), m)
    return model, x, y, m, l2


def _oracle(model, y, **kwargs):
    counted = CountingModel(model)
    return DecisionOracle(lambda images: tf.argmax(counted(images), axis=-1), y, **kwargs), counted


def _l0_l2(x, adv):
    d = (adv - x).reshape(len(x), -1)
    return np.sum(np.abs(d) > 1e-5, axis=1), np.linalg.norm(d, axis=1)


def test_minimal_l0_of_the_answer_key():
    model, x, _, m, _ = threshold_problem(seed=1, n=2, k=10, deficit=2.5)
    assert m == 3
    np.testing.assert_array_equal(model.minimal_l0(x), 3)
    off = x.reshape(2, -1).copy()
    off[:, model.pixels[:m]] = 0.0                      # m pixels off: fires; m - 1: does not
    assert np.all(np.argmax(model(off.reshape(x.shape)).numpy(), 1) == 1)
    off[:, model.pixels[0]] = 1.0
    assert np.all(np.argmax(model(off.reshape(x.shape)).numpy(), 1) == 0)


def test_salt_and_pepper_finds_adversarials_and_counts_exactly(problem):
    model, x, y, _, _ = problem
    keys = np.arange(4, dtype=np.uint32)
    oracle, counted = _oracle(model, y)
    result = salt_and_pepper(oracle, x, keys, steps=50, repetitions=2)
    assert result.found.all()
    assert verify(model, x, y, result.candidates).is_adversarial.all()
    np.testing.assert_array_equal(result.queries, oracle.queries)
    assert counted.counts()[0] == oracle.queries.sum()
    # Grouping of candidates into model calls does not change the result.
    again = salt_and_pepper(_oracle(model, y)[0], x, keys, steps=50, repetitions=2, lookahead=1)
    np.testing.assert_array_equal(again.candidates, result.candidates)
    # Weakened: a budget of 2 queries (the two smallest fractions) finds nothing.
    weak = salt_and_pepper(_oracle(model, y, max_queries=2)[0], x, keys, steps=50, repetitions=2)
    assert not weak.found.any()


def test_pointwise_reaches_the_minimal_l0_and_its_l2(problem):
    model, x, y, m, l2 = problem
    result = Pointwise()(model, x, y, seed=0)
    assert result.is_adversarial.all()                          # verified by the base class
    l0, dist = _l0_l2(x, result.adversarials[0])
    np.testing.assert_array_equal(result.distances["l0"][0], l0)
    assert np.all(l0 <= m + 1) and np.all(l0 >= m)
    # Binary search: within its precision of the value it converges to (threshold module doc).
    assert np.all(dist <= l2 * 1.01) and np.all(dist >= 3.3 / np.sqrt(m) - 1e-4)
    # A 4-ary search (3 values per call) reaches the same precision in fewer calls.
    wide = Pointwise(search_points=3)(model, x, y, seed=0)
    np.testing.assert_array_equal(wide.distances["l0"][0], l0)
    assert np.all(wide.distances["l2"][0] <= l2 * 1.01)
    # Weakened: without the binary search the m pixels stay at 0: L2 = sqrt(m) fails the check.
    coarse = Pointwise(binary_search_steps=0)(model, x, y, seed=0)
    assert coarse.is_adversarial.all() and np.all(coarse.distances["l0"][0] <= m + 1)
    assert np.all(coarse.distances["l2"][0] > l2 * 1.01)
    # Weakened: a budget that ends the reset phase early fails the L0 check.
    start = x.reshape(4, -1).copy()
    start[:, model.pixels] = 0.0
    start[:, np.setdiff1d(np.arange(784), model.pixels)[:200]] = 1.0          # L0 220
    full = Pointwise(binary_search_steps=0)(model, x, y, starting_points=start.reshape(x.shape))
    np.testing.assert_array_equal(full.distances["l0"][0], m)
    short = Pointwise(binary_search_steps=0, max_queries=100)(model, x, y, starting_points=start.reshape(x.shape))
    assert short.is_adversarial.all() and np.all(short.distances["l0"][0] > m + 1)


def test_pointwise_result_does_not_depend_on_speculation_and_counts_exactly(problem):
    model, x, y, _, _ = problem
    keys = np.arange(4, dtype=np.uint32) + 7
    start = salt_and_pepper(_oracle(model, y)[0], x, keys, steps=50, repetitions=1)
    results = []
    for per_image in (None, 1, 6):
        oracle, counted = _oracle(model, y)
        r = pointwise(oracle, x, start.candidates, keys, candidates_per_image=per_image)
        np.testing.assert_array_equal(r.queries, oracle.queries)
        assert counted.counts()[0] == oracle.queries.sum()
        results.append(r)
    for r in results[1:]:
        np.testing.assert_array_equal(r.candidates, results[0].candidates)
    assert results[2].queries.sum() > results[1].queries.sum()   # wasted speculative resets are counted
    assert verify(model, x, y, results[0].candidates).is_adversarial.all()


def test_pointwise_refuses_starts_that_are_not_adversarial(problem):
    model, x, y, _, _ = problem
    with pytest.raises(ValueError, match="not adversarial"):
        Pointwise()(model, x, y, starting_points=x)


def test_attack_results_report_each_images_queries_exactly_and_honour_the_callers_budget(problem):
    from abs_tf.attacks.decision.oracle import image_keys

    model, x, y, _, _ = problem
    result = Pointwise()(model, x, y, seed=3)
    oracle, _ = _oracle(model, y)
    Pointwise().algorithm(oracle, np.asarray(x, np.float32), image_keys(np.asarray(x, np.float32), 3), None)
    expected = oracle.queries + 2                     # + the clean check and the verification of the result
    assert len(set(expected.tolist())) > 1            # an even split of the call's total would not match
    np.testing.assert_array_equal(result.queries, expected)
    # The caller's budget reaches inside the run: no image uses more than it allows.
    capped = Pointwise()(model, x, y, seed=3, max_queries=40)
    assert np.all(capped.queries <= 40) and capped.budget_exhausted.all()
    assert np.all(capped.distances["l0"][0] >= result.distances["l0"][0])


def test_restarts_keep_each_images_best_run(problem):
    from abs_tf.attacks.decision.oracle import image_keys
    from abs_tf.attacks.decision.pointwise import restart_keys

    from abs_tf.attacks.decision.threshold import ThresholdModel

    del problem
    gen = np.random.default_rng(5)          # pixels of S with unequal values: which ones a run keeps matters
    pixels = gen.choice(784, 30, replace=False)
    x = gen.uniform(0.0, 0.4, (4, 784)).astype(np.float32)
    x[:, pixels] = gen.uniform(0.2, 1.0, 30).astype(np.float32)
    model = ThresholdModel(pixels, float(x[0, pixels].sum()) - 2.5)
    x, y = x.reshape(4, 28, 28, 1), np.zeros(4, np.int64)
    kwargs = dict(binary_search_steps=0)
    keys = image_keys(x, 1)
    l0, l2 = [], []
    for r in range(3):
        oracle, _ = _oracle(model, y)
        run = Pointwise(**kwargs).algorithm(oracle, x, keys if r == 0 else restart_keys(keys, r), None)
        a, b = _l0_l2(x, run.candidates)
        l0.append(a), l2.append(b)
    l0, l2 = np.array(l0), np.array(l2)
    assert not np.array_equal(l0, np.broadcast_to(l0[0], l0.shape))   # the restarts do explore different results
    best = np.lexsort((l2, l0), axis=0)[0]               # per image: fewest pixels, then smallest L2
    three = Pointwise(restarts=3, **kwargs)(model, x, y, seed=1)
    cols = np.arange(x.shape[0])
    np.testing.assert_array_equal(three.distances["l0"][0], l0[best, cols])
    np.testing.assert_allclose(three.distances["l2"][0], l2[best, cols], rtol=1e-5)
    one = Pointwise(**kwargs)(model, x, y, seed=1)
    np.testing.assert_allclose(one.distances["l2"][0], l2[0], rtol=1e-5)   # restart 0 is the single run
    assert np.all(three.queries > one.queries)
