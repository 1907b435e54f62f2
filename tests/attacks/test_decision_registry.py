"""Every decision-based attack runs on every model of the registry (tiny budgets; ABS with a
short search) and reports exact per-image query counts: whole numbers, not a call's total
split evenly."""

import numpy as np
import pytest

from abs_tf import registry
from abs_tf.attacks import decision

ABS_SPEED = {"n_steps": 1, "n_samples": 100}   # the latent search shortened: the attacks' plumbing is what is tested
# ABS variants that differ from `abs` / `binary_abs` only in their weights: -m slow (each ~20 s of tracing)
SAME_CODE_AS_ABS = ("abs_stage7", "abs_official", "binary_abs_official")
MODELS = [pytest.param(n, marks=pytest.mark.slow) if n in SAME_CODE_AS_ABS else n for n in registry.names()]


def _attacks(model):
    quick_start = decision.SaltAndPepper(steps=8, repetitions=1)
    out = {
        "salt_and_pepper": quick_start,
        "pointwise": decision.Pointwise(init_attack=quick_start, binary_search_steps=1, max_queries=80),
        "boundary": decision.Boundary(steps=4),
        "gaussian_noise": decision.AdditiveGaussianNoise(repetitions=1),
        "uniform_noise": decision.AdditiveUniformNoise(repetitions=1),
    }
    if callable(getattr(model, "search", None)):
        out["latent_descent"] = decision.LatentDescent(coarse_steps=4, binary_search_steps=2)
    return out


@pytest.mark.parametrize("name", MODELS)
def test_every_decision_attack_runs_on_every_registered_model(name, mnist_test, reference_dir):
    spec = registry.get_spec(name)
    options = {k: v for k, v in ABS_SPEED.items() if k in spec.search_options}
    model = registry.load_model(name, **options)
    images, labels = mnist_test
    x, y = images[:2], labels[:2]
    for attack_name, attack in _attacks(model).items():
        result = attack(model, x, y, seed=1)
        q = result.queries
        assert q.shape == (2,) and np.all(q >= 2), (name, attack_name, q)   # clean check + verification at least
        np.testing.assert_array_equal(q, np.round(q), err_msg=f"{name} / {attack_name}: queries not per image")
        # whatever it reports as adversarial was re-classified by the verifier as not the label
        adv = result.is_adversarial[0]
        assert np.all(result.predictions[0][adv] != y[adv]), (name, attack_name)
    distal = decision.distal_adversarials(model, [3], steps=2, seed=0)
    assert distal.queries.shape == (1,) and distal.queries[0] > 0
