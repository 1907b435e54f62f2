"""The paper's protocol on hand-made records: minimum over attacks, winners, medians, accuracy at ε."""

from __future__ import annotations

import math

import numpy as np
import pytest

from abs_tf.evaluation import protocol


def _records(record, table, *, norm="l2", model="m", **kwargs):
    """table: {index: {attack: distance or None or "clean" or "failed"}}."""
    out = []
    for index, row in table.items():
        for attack, d in row.items():
            if d == "clean":
                out.append(record(model, attack, index, norm=norm, clean_prediction=5, label=1, **kwargs))
            elif d == "failed":
                out.append(record(model, attack, index, norm=norm, distance=None, no_gradient=True, **kwargs))
            else:
                out.append(record(model, attack, index, norm=norm, distance=d, **kwargs))
    return out


TABLE = {0: {"a": 1.0, "b": 0.5}, 1: {"a": 2.0, "b": None}, 2: {"a": None, "b": None},
         3: {"a": "clean", "b": "clean"}, 4: {"a": 1.0, "b": 1.0}}


def test_minimum_over_attacks_and_winners(record):
    result = protocol.per_image_minimum(_records(record, TABLE), "m", "l2", ["a", "b"])
    np.testing.assert_array_equal(result.indices, [0, 1, 2, 3, 4])
    np.testing.assert_array_equal(result.distances, [0.5, 2.0, math.inf, 0.0, 1.0])
    assert result.winners == ["b", "a", None, protocol.CLEAN, "a"]  # tie at image 4: preset order
    assert protocol.per_image_minimum(_records(record, TABLE), "m", "l2", ["b", "a"]).winners[4] == "b"


def test_median_and_accuracy_at_epsilon(record):
    d = protocol.per_image_minimum(_records(record, TABLE), "m", "l2", ["a", "b"]).distances
    assert protocol.median(d) == 1.0
    # adversarial within 1.5: 0.5, 0 (clean error), 1.0; robust: 2.0 and inf
    assert protocol.accuracy(d, 1.5, "l2") == pytest.approx(2 / 5)
    assert protocol.accuracy(d, 2.0, "l2") == pytest.approx(1 / 5)
    np.testing.assert_allclose(protocol.curve(d, [0.0, 0.5, 1.0, 2.0, 100.0], "l2"), [0.8, 0.6, 0.4, 0.2, 0.2])
    # more than half the images unbroken: the median is infinite (null in summary.json)
    assert protocol.median([1.0, math.inf, math.inf]) == math.inf
    assert protocol.json_number(protocol.median([1.0, math.inf, math.inf])) is None


def test_threshold_rule_is_the_verifiers_distance_at_most_epsilon():
    eps32 = float(np.float32(0.3))  # 0.30000001192...: a step of exactly 0.3 measured in float32
    assert protocol.accuracy([eps32], 0.3, "linf") == 0.0
    assert protocol.accuracy([0.3 + 1e-4], 0.3, "linf") == 1.0
    assert protocol.accuracy([12.0], 12, "l0") == 0.0
    assert protocol.accuracy([13.0], 12, "l0") == 1.0


def test_no_gradient_is_never_read_as_robust(record):
    # image 0: both attacks failed for lack of gradient -> nothing shows it robust: 0, flagged;
    # image 1: b ran and found nothing -> robust (inf); image 2: a's verified 0.7 counts.
    records = _records(record, {0: {"a": "failed", "b": "failed"}, 1: {"a": "failed", "b": None},
                                2: {"a": 0.7, "b": "failed"}})
    result = protocol.per_image_minimum(records, "m", "l2", ["a", "b"])
    np.testing.assert_array_equal(result.distances, [0.0, math.inf, 0.7])
    np.testing.assert_array_equal(result.failed, [True, False, False])
    assert result.winners == [None, None, "a"]
    summary = protocol.summarize(records, expected={"m": {"l2": ["a", "b"]}})["models"]["m"]["norms"]["l2"]
    assert summary["failed"] == [0]
    # per attack (a set of one): its own failures count 0
    assert summary["attacks"]["a"]["no_gradient"] == 2 and summary["attacks"]["a"]["median"] == 0.0
    assert summary["attacks"]["b"]["median"] == 0.0 and summary["attacks"]["b"]["accuracy"] == pytest.approx(1 / 3)


def test_incomplete_images_are_left_out(record):
    records = _records(record, {0: {"a": 1.0, "b": 2.0}, 1: {"a": 0.1}})
    result = protocol.per_image_minimum(records, "m", "l2", ["a", "b"])
    np.testing.assert_array_equal(result.indices, [0])
    np.testing.assert_array_equal(result.incomplete, [1])
    summary = protocol.summarize(records, expected={"m": {"l2": ["a", "b"]}})
    assert summary["models"]["m"]["norms"]["l2"]["images"] == 1
    assert summary["models"]["m"]["norms"]["l2"]["incomplete"] == 1


def test_counts_for_enters_other_norms_and_never_won(record):
    # "pw" is an L0 attack that also counts in L2 (Pointwise in the paper).
    records = (_records(record, {0: {"fgm": 1.0}, 1: {"fgm": 2.0}}, norm="l2")
               + _records(record, {0: {"pw": 0.5}, 1: {"pw": 3.0}}, norm="l0", counts_for=("l0", "l2"))
               + _records(record, {0: {"ddn": 1.2}, 1: {"ddn": 2.5}}, norm="l2"))
    expected = {"m": {"l2": ["fgm", "ddn", "pw"], "l0": ["pw"]}}
    summary = protocol.summarize(records, expected=expected)
    l2 = summary["models"]["m"]["norms"]["l2"]
    assert l2["attacks"]["pw"]["wins"] == 1 and l2["attacks"]["fgm"]["wins"] == 1
    assert l2["median"] == pytest.approx(1.25)  # per image: 0.5 (pw), 2.0 (fgm)
    assert l2["never_won"] == ["ddn"] and summary["never_won"] == ["ddn"]
    assert summary["models"]["m"]["norms"]["l0"]["median"] == pytest.approx(1.75)


def test_summary_numbers_per_attack_and_clean_accuracy(record):
    from abs_tf.evaluation.records import CleanRecord

    records = _records(record, TABLE)
    clean = [CleanRecord("m", i, 1, 5 if i == 3 else 1, None, 0.0) for i in TABLE]
    summary = protocol.summarize(records, clean, expected={"m": {"l2": ["a", "b"]}})
    m = summary["models"]["m"]
    assert m["clean"] == {"images": 5, "accuracy": pytest.approx(0.8)}
    l2 = m["norms"]["l2"]
    assert l2["median"] == 1.0 and l2["accuracy"] == pytest.approx(0.4)
    assert l2["clean_errors"] == 1 and l2["unbroken"] == 1
    # attack a alone: 1.0, 2.0, inf, 0, 1.0 -> median 1.0; success 4 of 5
    assert l2["attacks"]["a"]["median"] == 1.0 and l2["attacks"]["a"]["success_rate"] == pytest.approx(0.8)
    assert l2["attacks"]["b"]["median"] == 1.0 and l2["attacks"]["b"]["success_rate"] == pytest.approx(0.6)
    assert l2["attacks"]["a"]["wins"] == 2 and l2["attacks"]["b"]["wins"] == 1
