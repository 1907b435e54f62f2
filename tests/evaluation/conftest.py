"""Fixtures of the evaluation tests: hand-made records and a tiny linear "test set"."""

from __future__ import annotations

import math

import pytest

from abs_tf.evaluation.records import Record


def make_record(model="m", attack="a", index=0, *, norm="l2", distance=None, label=1, clean_prediction=None,
                no_gradient=False, counts_for=None, queries=10.0):
    """A record with ``distance`` in every norm (None: no adversarial; 0 with a clean error)."""
    clean_prediction = label if clean_prediction is None else clean_prediction
    if clean_prediction != label:
        distance = 0.0
    success = distance is not None
    d = float(distance) if success else math.inf
    return Record(model=model, attack=attack, index=index, label=label, clean_prediction=clean_prediction,
                  prediction=(label + 1) % 10 if success else clean_prediction, success=success,
                  distances={"l0": d, "l1": d, "l2": d, "linf": d}, norm=norm,
                  counts_for=tuple(counts_for or (norm,)), no_gradient=no_gradient and not success,
                  budget_exhausted=False, forward_queries=queries, gradient_queries=0.0, queries=queries,
                  seconds=0.1, seed=0, attack_repr=f"{attack}()")


@pytest.fixture
def record():
    return make_record


@pytest.fixture(scope="session")
def linear_test_set():
    """A linear model and a 10-image "test set" it classifies correctly except image 3, whose
    label is changed (a clean error)."""
    from abs_tf.attacks.linear import linear_problem

    model, images, labels = linear_problem(seed=3, n=10)
    labels = labels.copy()
    labels[3] = (labels[3] + 1) % 10
    return model, images, labels
