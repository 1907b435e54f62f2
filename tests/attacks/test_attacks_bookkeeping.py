"""The base class's bookkeeping: clean-misclassified images, the one threshold rule, best_of's
checks, per-image queries, seeds, criteria, starting points, decision-only models, budgets."""

import numpy as np
import pytest
import tensorflow as tf

from abs_tf import attacks
from abs_tf.attacks.linear import linear_problem

EVERY_ATTACK = [
    (attacks.FGSM(), {"epsilons": [0.0, 0.3]}),
    (attacks.PGD(norm="linf", steps=3), {"epsilons": [0.0, 0.3]}),
    (attacks.PGD(norm="l2", steps=3), {"epsilons": [0.0, 3.0]}),
    (attacks.SPSA(steps=2, samples=8), {"epsilons": [0.0, 0.3]}),
    (attacks.DeepFool(steps=3), {}),
    (attacks.CarliniWagnerL2(steps=3, binary_search_steps=1), {}),
    (attacks.DDN(steps=3), {}),
    (attacks.FMN(norm="l0", steps=3), {}),
]


@pytest.fixture(scope="module")
def problem():
    return linear_problem(seed=0, n=4)


@pytest.mark.parametrize("attack,kwargs", EVERY_ATTACK, ids=[repr(a) for a, _ in EVERY_ATTACK])
def test_clean_misclassified_is_adversarial_at_zero_for_every_attack(problem, attack, kwargs):
    model, x, y = problem
    wrong = y.copy()
    wrong[:2] = (y[:2] + 1) % 10  # the model "misclassifies" the first two
    result = attack(model, x, wrong, **kwargs)
    assert result.is_adversarial[:, :2].all()
    np.testing.assert_array_equal(result.distances["linf"][:, :2], 0.0)
    np.testing.assert_array_equal(result.adversarials[:, :2], np.broadcast_to(x[:2], result.adversarials[:, :2].shape))
    # They are not attacked: one clean query each (plus nothing else).
    np.testing.assert_array_equal(result.queries[:2], 1)
    assert np.all(result.queries[2:] > 1)
    best = attacks.minimize(attack, model, x, wrong)
    assert best.is_adversarial[:2].all() and np.all(best.distances["l2"][:2] == 0)


def test_one_threshold_rule_for_verify_accuracy_and_median():
    # An L∞ step of exactly 0.3 that float32 measures as slightly more than 0.3.
    x = np.full((1, 28, 28, 1), 0.1, np.float32)
    x[0, 0, 0, 0] = 0.4
    step = x.copy()
    step[0, 0, 0, 0] = np.float32(0.4) + np.float32(0.3)
    measured = float(attacks.distances(x, step)["linf"][0])
    assert measured > np.float32(0.3)  # the float32 round-off this rule is about
    assert attacks.within(measured, 0.3, "linf") and not attacks.within(0.3001, 0.3, "linf")
    model = lambda images: tf.stack([images[:, 0, 0, 0], 1.0 - images[:, 0, 0, 0]] + [tf.zeros_like(  # noqa: E731
        images[:, 0, 0, 0])] * 8, axis=1)                 # class 1 iff pixel < 0.5
    label = np.array([1])
    v = attacks.verify(model, x, label, step, norm="linf", epsilon=0.3)
    assert v.is_adversarial.all()
    result = attacks.line_search(model, x, label, step - x, scales=(1.0,), bisection_steps=0, norm="linf")
    assert result.is_adversarial.all() and result.accuracy(0.3) == 0.0
    assert result.accuracy(result.median()) == 0.0 and result.accuracy(0.29) == 1.0


def test_best_of_refuses_other_images_labels_or_criterion_and_reverifies(problem):
    model, x, y = problem
    a = attacks.minimize(attacks.FGM(), model, x, y)
    b = attacks.minimize(attacks.DeepFool(), model, x, y)
    with pytest.raises(ValueError, match="images"):
        attacks.best_of([a, b], "l2", model=model, images=x[::-1], labels=y[::-1])
    with pytest.raises(ValueError, match="labels"):
        attacks.best_of([a, b], "l2", model=model, images=x, labels=(y + 1) % 10)
    targeted = attacks.minimize(attacks.FGM(), model, x, (y + 1) % 10, criterion=attacks.TargetedMisclassification())
    with pytest.raises(ValueError, match="criterion"):
        attacks.best_of([a, targeted], "l2", model=model, images=x, labels=y)
    # A forged "adversarial" (the clean image claimed adversarial at distance 0) is re-verified,
    # dropped, and the image falls back to its next best result.
    forged = dict(a.__dict__)
    forged.update(adversarials=x.copy(), is_adversarial=np.ones(4, bool),
                  distances={n: np.zeros(4, np.float32) for n in attacks.NORMS})
    forged = attacks.MinimalResult(**forged)
    best = attacks.best_of([forged, b], "l2", model=model, images=x, labels=y)
    np.testing.assert_allclose(best.distances["l2"], b.distances["l2"])
    assert best.is_adversarial.all()
    np.testing.assert_array_equal(best.queries, forged.queries + b.queries + 2)  # two verification rounds


def test_queries_per_image_forward_and_gradient(problem):
    model, x, y = problem
    result = attacks.PGD(norm="linf", steps=5, early_stop=False)(model, x, y, epsilons=[0.01, 0.02])
    # clean check 1; per epsilon 5 gradient passes (each a forward + a gradient) and 1 verification
    np.testing.assert_array_equal(result.forward_queries, 1 + 2 * (5 + 1))
    np.testing.assert_array_equal(result.gradient_queries, 2 * 5)
    deepfool = attacks.DeepFool(steps=1, candidates=3)(model, x, y)
    # clean check, DeepFool's first clean pass, 1 step over 2 candidate copies, verification
    np.testing.assert_array_equal(deepfool.forward_queries, 1 + 1 + 2 + 1)
    np.testing.assert_array_equal(deepfool.gradient_queries, 2)


def test_seeded_random_streams_do_not_depend_on_the_batch(problem):
    model, x, y = problem
    for attack, eps in [(attacks.PGD(norm="linf", steps=2, early_stop=False), 0.05),
                        (attacks.SPSA(steps=2, samples=8, early_stop=False), 0.05)]:
        together = attack(model, x, y, epsilons=[eps], seed=3).adversarials[0]
        alone = attack(model, x[2:3], y[2:3], epsilons=[eps], seed=3).adversarials[0]
        reordered = attack(model, x[::-1], y[::-1], epsilons=[eps], seed=3).adversarials[0][::-1]
        np.testing.assert_allclose(alone[0], together[2], atol=1e-6)
        np.testing.assert_allclose(reordered, together, atol=1e-6)
        other_seed = attack(model, x, y, epsilons=[eps], seed=4).adversarials[0]
        assert np.abs(other_seed - together).max() > 1e-3, attack


def test_targeted_criterion_reaches_the_target(problem):
    model, x, y = problem
    target = (y + 3) % 10
    criterion = attacks.TargetedMisclassification()
    for attack in (attacks.PGD(norm="l2", steps=30), attacks.DeepFool(), attacks.FMN(), attacks.DDN()):
        best = attacks.minimize(attack, model, x, target, criterion=criterion)
        assert best.is_adversarial.all(), attack
        np.testing.assert_array_equal(np.argmax(model(best.adversarials).numpy(), 1), target)
        untargeted = attacks.minimize(attack, model, x, y)
        assert np.all(best.distances["l2"] >= untargeted.distances["l2"] * (1 - 1e-3))  # a target costs more


def test_starting_points_are_checked_and_used(problem):
    model, x, y = problem
    start = attacks.minimize(attacks.FGM(), model, x, y).adversarials
    bad = start.copy()
    bad[1:3] = x[1:3]
    with pytest.raises(ValueError, match="2 of 4 are not adversarial"):
        attacks.FMN(steps=5)(model, x, y, starting_points=bad)
    with pytest.raises(TypeError, match="does not take starting_points"):
        attacks.DeepFool()(model, x, y, starting_points=start)
    analytic, _, _ = model.minimal_adversarials(x, y, "l2")
    result = attacks.FMN(steps=10, binary_search_steps=20)(model, x, y, starting_points=start * 0 + np.clip(
        x + 3 * (start - x), 0, 1))
    assert result.is_adversarial.all()
    assert np.all(result.distances["l2"][0] <= 1.01 * analytic)


def test_decision_model_gives_classes_only_and_is_counted(problem):
    model, x, y = problem
    counted = attacks.CountingModel(model)
    decision = attacks.DecisionModel(counted)
    np.testing.assert_array_equal(decision(x).numpy(), np.argmax(model(x).numpy(), 1))
    xt = tf.constant(x)
    with tf.GradientTape() as tape:
        tape.watch(xt)
        out = tf.cast(decision(xt), tf.float32)
    assert tape.gradient(out, xt) is None
    assert counted.counts() == (8, 0)
    assert decision.is_adversarial(x, (y + 1) % 10, attacks.MISCLASSIFICATION).numpy().all()


class _WithSearch:
    """A model with an ABS-like ``search`` (reconstructions); both calls must be counted."""

    def __init__(self, model):
        self.model = model

    def __call__(self, images):
        return self.model(images)

    def search(self, images):
        return {"losses": -self.model(images), "reconstructions": tf.repeat(images, 10, axis=-1)}


def test_search_is_counted(problem):
    model, x, _ = problem
    counted = attacks.CountingModel(_WithSearch(model))
    out = counted.search(tf.constant(x))
    assert out["reconstructions"].shape == (4, 28, 28, 10)
    assert counted.counts() == (4, 0)
    assert not hasattr(attacks.CountingModel(model), "search")


def test_query_budget_stops_the_search(problem):
    model, x, y = problem
    attack = attacks.PGD(norm="linf", steps=10, early_stop=False)
    free = attacks.minimize(attack, model, x, y)
    capped = attacks.minimize(attack, model, x, y, max_queries=60)
    assert np.all(capped.queries < free.queries)
    # a stage is never cut: the overshoot is at most one stage (10 steps x 2 + 1 verification)
    assert np.all(capped.queries <= 60 + 21)
    assert np.all(capped.budget_exhausted | capped.is_adversarial)
    eps = attacks.PGD(norm="linf", steps=10)(model, x, y, epsilons=[0.001, 0.002, 0.3], max_queries=15)
    assert eps.budget_exhausted.all() and not eps.is_adversarial[2].any()


def test_full_success_records_the_unbounded_sanity_check(problem):
    model, x, y = problem
    assert attacks.PGD(norm="linf", steps=10)(model, x, y, epsilons=[0.001, 1.0]).full_success
    assert not attacks.PGD(norm="linf", steps=10)(model, x, y, epsilons=[1.0, 0.001]).full_success
