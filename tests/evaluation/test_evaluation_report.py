"""report.md on hand-made records: the paper's figures beside ours and the automatic checks' flags."""

from __future__ import annotations

from abs_tf.evaluation import records as rec, settings as st
from abs_tf.evaluation.report import PAPER_TABLE1, write_report


def _directory(tmp_path, record):
    attacks = {"pgd": {"kind": "gradient", "counts_for": ["l2"]},
               "boundary": {"kind": "decision", "counts_for": ["l2"]}}
    st.write_settings(tmp_path, {"preset": "hand", "attacks": attacks, "budgets": [],
                                 "plans": {m: {"attacks": ["pgd", "boundary"], "skipped": {}} for m in ("cnn", "abs")}})
    rows = []
    for i in range(3):
        rows += [record("cnn", "pgd", i, distance=3.0), record("cnn", "boundary", i, distance=1.0 + 0.1 * i),
                 record("abs", "pgd", i, distance=2.2), record("abs", "boundary", i, distance=2.5)]
    rec.append_records(tmp_path, rows)
    # abs: image 0's certified-L2 estimate 2.5 lies above its verified adversarial at 2.2: a flag
    rec.append_clean(tmp_path, [rec.CleanRecord("abs", i, 1, 1, 2.5 if i == 0 else 1.0, 0.1) for i in range(3)]
                     + [rec.CleanRecord("cnn", i, 1, 1, None, 0.1) for i in range(3)])
    return tmp_path


def test_report_sets_ours_beside_the_paper_and_flags_checks(tmp_path, record):
    text = write_report(_directory(tmp_path, record)).read_text()
    assert "| cnn | 3 | 100 % | 0 % (8 %) | 1.10 (1.10) |" in text       # median 1.1 = the paper's 1.1
    assert "| abs | 3 | 100 % | 100 % (80 %) | 2.20 (2.20) |" in text
    assert PAPER_TABLE1["CNN"]["l2"] == (0.08, 1.1)
    assert "- nowhere" in text                                           # no median off by more than 25 %
    assert "FLAG cnn L2: decision-based median 1.10 vs gradient-based 3.00" in text
    assert "abs L2: decision" not in text
    assert "FLAG: verified adversarials below the estimate on images [0]" in text
    assert "attacks that never won on any model: pgd" not in text       # pgd wins on abs
    assert (tmp_path / "accuracy_curves.png").read_bytes()[:4] == b"\x89PNG"


def test_report_names_medians_far_from_the_paper(tmp_path, record):
    directory = _directory(tmp_path, record)
    rec.append_records(directory, [record("cnn", a, 3, distance=9.0) for a in ("pgd", "boundary")]
                       + [record("cnn", a, i, distance=9.0) for i in (4, 5) for a in ("pgd", "boundary")])
    text = write_report(directory).read_text()
    # per image: 1.0, 1.1, 1.2 (boundary), 9, 9, 9 -> median 5.1
    assert "cnn L2 median 5.10 vs the paper's 1.10 (above by more than 25%)" in text
