"""Paired comparison of two rows (`abs_tf.evaluation.compare`) on hand-made records."""

from __future__ import annotations

import math

import pytest

from abs_tf.evaluation import compare, records as rec, settings as st
from abs_tf.evaluation.report import write_report

EXPECTED = {"a": {"l2": ["pgd", "boundary"]}, "b": {"l2": ["pgd", "boundary"]}}


def _rows(record, model, distances):
    """Per image i: pgd at distances[i], boundary 10 % above it (pgd wins)."""
    return [r for i, d in enumerate(distances)
            for r in (record(model, "pgd", i, distance=d), record(model, "boundary", i, distance=1.1 * d))]


def test_sign_test_is_the_exact_binomial_tail():
    assert compare.sign_test(0, 6) == pytest.approx(2 / 64)
    assert compare.sign_test(6, 6) == pytest.approx(2 / 64)
    assert compare.sign_test(1, 8) == pytest.approx(2 * 9 / 256)
    assert compare.sign_test(4, 8) == 1.0
    assert compare.sign_test(0, 0) == 1.0


def test_a_model_below_on_every_image_is_measurably_less_robust(record):
    b = [1.0, 1.5, 2.0, 2.5, 3.0, 3.5, 4.0, 4.5]
    records = _rows(record, "a", [0.5 * x for x in b]) + _rows(record, "b", b)
    c = compare.compare(records, "a", "b", EXPECTED)["l2"]
    assert (c.images, c.lower, c.higher, c.ties) == (8, 8, 0, 0)
    assert c.p_value == pytest.approx(2 / 256)
    assert c.verdict == compare.LESS
    assert c.distances_a[0] == 0.5                    # the per-image minimum (pgd), not boundary's
    reverse = compare.compare(records, "b", "a", {"a": EXPECTED["a"], "b": EXPECTED["b"]})["l2"]
    assert reverse.verdict == compare.MORE


def test_small_differences_are_ties_and_too_few_images_cannot_tell(record):
    b = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0]
    # 4 % below on every image: within RELATIVE_TIE, no difference
    close = compare.compare(_rows(record, "a", [0.96 * x for x in b]) + _rows(record, "b", b), "a", "b",
                            EXPECTED)["l2"]
    assert (close.ties, close.verdict) == (8, compare.UNMEASURABLE)
    # half below, half above: measurable, no difference
    mixed = [0.5 * x if i % 2 else 2 * x for i, x in enumerate(b)]
    c = compare.compare(_rows(record, "a", mixed) + _rows(record, "b", b), "a", "b", EXPECTED)["l2"]
    assert (c.lower, c.higher, c.verdict) == (4, 4, compare.NO_DIFFERENCE)
    # below on all 5 images: p = 2/32 can never fall below 0.05
    few = compare.compare(_rows(record, "a", [0.5 * x for x in b[:5]]) + _rows(record, "b", b[:5]), "a", "b",
                          EXPECTED)["l2"]
    assert (few.lower, few.verdict) == (5, compare.UNMEASURABLE)


def test_only_images_both_rows_have_complete_are_compared(record):
    records = _rows(record, "a", [1.0] * 8) + _rows(record, "b", [2.0] * 6)
    records.append(record("b", "pgd", 6, distance=2.0))           # image 6 lacks boundary on b
    records += [record("a", "pgd", 9, distance=None), record("a", "boundary", 9, distance=None)]  # no adversarial
    records += [record("b", "pgd", 9, distance=None), record("b", "boundary", 9, distance=None)]
    c = compare.compare(records, "a", "b", EXPECTED)["l2"]
    assert list(c.indices) == [0, 1, 2, 3, 4, 5, 9]
    assert math.isinf(c.distances_a[-1]) and c.ties == 1          # both unbroken: a tie


@pytest.mark.parametrize("pair", compare.PAIRS, ids=lambda p: f"{p[0]}-vs-{p[1]}")
def test_report_flags_a_pair_where_the_first_row_is_less_robust(tmp_path, record, pair):
    a, b, _, meaning = pair
    attacks = {"pgd": {"kind": "gradient", "counts_for": ["l2"]}, "boundary": {"kind": "decision", "counts_for": ["l2"]}}
    st.write_settings(tmp_path, {"preset": "hand", "attacks": attacks, "budgets": [],
                                 "plans": {m: {"attacks": ["pgd", "boundary"], "skipped": {}} for m in (a, b)}})
    distances = [1.0 + 0.25 * i for i in range(7)]
    rec.append_records(tmp_path, _rows(record, a, [0.5 * d for d in distances]) + _rows(record, b, distances))
    text = write_report(tmp_path).read_text()
    assert f"| L2 | 7 | 0.88 | 1.75 | 0 % | 57 % | 7 | 0 | 0 | 0.016 | {compare.LESS} |" in text
    assert f"**FLAG: {a} is measurably less robust than {b} in L2: {meaning}.**" in text
    assert f"Decision: none yet (add `- {a} against {b}: decision` to notes.md)" in text
    (tmp_path / "notes.md").write_text(f"- {a} against {b}: kept, it alone reaches 99 % clean\n")
    assert "Decision: kept, it alone reaches 99 % clean" in write_report(tmp_path).read_text()
    # the weakened comparison, the other way round: no flag
    other = tmp_path / "other"
    other.mkdir()
    st.write_settings(other, st.read_settings(tmp_path))
    rec.append_records(other, _rows(record, a, [2 * d for d in distances]) + _rows(record, b, distances))
    text = write_report(other).read_text()
    assert f"FLAG: {a} is measurably" not in text and f"{a} is not measurably less robust than {b}" in text
    assert f"| 0 | 7 | 0 | 0.016 | {compare.MORE} |" in text
