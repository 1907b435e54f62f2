"""Presets: what runs on which model, what is skipped and why, and how attacks meet models."""

from __future__ import annotations

import pytest
import tensorflow as tf

from abs_tf import attacks
from abs_tf.attacks.linear import random_linear_model
from abs_tf.evaluation import presets
from abs_tf.models.preprocessing import BINARIZE


class Binarized:
    """A linear model behind a declared binarizing front end."""

    preprocessing = BINARIZE

    def __init__(self):
        self.behind = random_linear_model(0)

    def logits_after_preprocessing(self, images):
        return self.behind(images)

    def __call__(self, images):
        return self.behind(BINARIZE(images))


def test_plan_skips_with_reasons():
    linear = presets.traits_of(random_linear_model(0))
    assert linear == presets.ModelTraits()
    plan = presets.plan(presets.TABLE1, linear, substitute_available=False)
    assert plan.skipped["latent_descent"] == "ABS models only"
    assert plan.skipped["fgsm_estimated"] == "ABS models only"
    assert plan.skipped["transfer_l2"] == "no substitute model given"
    for name, reason in plan.skipped.items():  # everything else skipped is missing from the library
        if reason not in ("ABS models only", "no substitute model given"):
            assert "not registered in abs_tf.attacks.ATTACKS" in reason
    ran = {e.name for e in plan.entries}
    assert {"fgsm", "pgd_linf", "deepfool_l2"} <= ran and not ran & set(plan.skipped)
    abs_plan = presets.plan(presets.TABLE1, presets.ModelTraits(latent_search=True, certified_bounds=True))
    assert "fgsm_estimated" in {e.name for e in abs_plan.entries}
    with pytest.raises(ValueError, match="unknown attack"):
        presets.plan(presets.QUICK, linear, only=["pgd"])


def test_table1_has_the_papers_attack_set_per_norm():
    counts = {n: {e.name for e in presets.TABLE1 if n in e.counts_for} for n in ("l0", "l2", "linf")}
    assert {"salt_and_pepper", "pointwise"} <= counts["l0"]
    assert {"transfer_l2", "gaussian_noise", "deepfool_l2", "boundary", "pointwise", "fgm", "bim_l2",
            "latent_descent", "fgm_estimated"} <= counts["l2"]
    assert {"transfer_linf", "fgsm", "pgd_linf", "mim_linf", "fgsm_estimated"} <= counts["linf"]


def test_build_gives_each_model_its_strongest_gradient():
    fgsm = presets.AttackEntry("fgsm", "fgsm", "linf")
    attack, target = presets.build(fgsm, Binarized())
    assert isinstance(target, attacks.StraightThrough)
    x = tf.fill([1, 28, 28, 1], 0.3)
    with tf.GradientTape() as tape:
        tape.watch(x)
        z = target(x)[:, 0]
    assert float(tf.reduce_sum(tf.abs(tape.gradient(z, x)))) > 0  # not the step function's zero
    plain = random_linear_model(0)
    assert presets.build(fgsm, plain)[1] is plain
    estimated = presets.AttackEntry("e", "fgsm", "linf", kind="estimated", models="abs",
                                    estimator={"method": "gaussian", "samples": 4})
    assert isinstance(presets.build(estimated, plain)[1], attacks.EstimatedGradients)
    with pytest.raises(ValueError, match="norm"):
        presets.build(presets.AttackEntry("x", "fgsm", "l2"), plain)
    with pytest.raises(KeyError, match="not registered"):
        presets.build(presets.AttackEntry("x", "no_such_attack", "l2"), plain)
