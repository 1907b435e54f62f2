"""report.md on hand-made records: the paper's figures beside ours and the automatic checks' flags."""

from __future__ import annotations

import json

from abs_tf.evaluation import records as rec, settings as st
from abs_tf.evaluation.report import PAPER_TABLE1, write_report
from abs_tf.evaluation.runner import DISTAL_SETTING


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
    assert "cnn L2 median 5.10 vs the paper's 1.10 (above by more than 25%): not yet explained (add `- cnn L2: " \
        "why` to notes.md)" in text
    (directory / "notes.md").write_text("# Why\n\n- cnn L2: images 3-5 were made harder on purpose\n- abs L0: x\n")
    text = write_report(directory).read_text()
    assert "cnn L2 median 5.10 vs the paper's 1.10 (above by more than 25%): images 3-5 were made harder on " \
        "purpose" in text


def _distal_files(root, model, reached):
    """Hand-made distal adversarials of ``model``: 4 images, ``reached`` of them at p 0.95."""
    import numpy as np

    from abs_tf.evaluation import distal

    targets = np.arange(4) % 10
    probabilities = np.full((4, 10), 0.01, np.float32)
    probabilities[np.arange(4), targets] = [0.95 if k < reached else 0.1 for k in range(4)]
    arrays, row = distal.paths(root, model)
    arrays.parent.mkdir(parents=True, exist_ok=True)
    np.savez(arrays, images=np.zeros((4, 28, 28, 1), np.float32), targets=targets, probabilities=probabilities,
             reached=probabilities[np.arange(4), targets] >= 0.9, steps=np.full(4, 7), queries=np.full(4, 15.0))
    p = probabilities[np.arange(4), targets]
    row.write_text(json.dumps({"model": model, "images": 4, "steps_budget": 50, "threshold": 0.9, "loss": "logit",
                               "gradient": "model's own", "seed": 0, "reached_fraction": reached / 4,
                               "mean_probability": float(p.mean()), "median_probability": float(np.median(p)),
                               "mean_steps": 7.0, "queries_per_image": 15.0, "seconds": 2.0}))


def test_report_sets_distal_adversarials_beside_the_papers_finding(tmp_path, record):
    directory = _directory(tmp_path, record)
    settings = st.read_settings(directory)
    settings["attacks"][DISTAL_SETTING] = {"kind": "distal", "params": {"images": 4, "steps": 50, "threshold": 0.9,
                                                                        "loss": "logit"}}
    st.write_settings(directory, settings)
    _distal_files(directory, "cnn", reached=4)       # the paper: the CNN reaches high confidence on noise
    _distal_files(directory, "abs", reached=3)       # the paper: ABS rarely does
    text = write_report(directory).read_text()
    section = text.split("## Distal adversarials")[1].split("## ")[0]
    assert "| cnn | 4 | 50 | 100 % | 0.95 | 0.95 | 7 | 15 | model's own | 2 | agrees |" in section
    assert "| abs | 4 | 50 | 75 % | 0.74 | 0.95 | 7 | 15 | model's own | 2 | **differs** |" in section
    assert "![distal adversarials](distal_adversarials.png)" in section
    assert (directory / "distal_adversarials.png").read_bytes()[:4] == b"\x89PNG"
    assert "Not made" not in section
    (directory / "notes.md").write_text("- abs distal: what reaches 0.9 looks like the target digit\n")
    section = write_report(directory).read_text().split("## Distal adversarials")[1].split("## ")[0]
    assert "- abs: what reaches 0.9 looks like the target digit" in section


def test_report_flags_a_result_weakened_by_more_steps(tmp_path, record):
    directory = _directory(tmp_path, record)
    common = {"checked": True, "attacks": ["pgd"], "images": [0, 1], "factor": 2, "tolerance": 0.05}
    rows = [{"image": 0, "stored": 3.0, "epsilon": 3.15, "more_steps": 3.1, "weakened": False}]
    flag = "pgd on image 1: 3 stored, 3.5 with 2x the steps"
    (directory / "checks.json").write_text(json.dumps({
        "cnn": {"more_steps": {**common, "held": False, "weakened": [flag], "per_attack": {}}},
        "abs": {"more_steps": {**common, "held": True, "weakened": [], "per_attack": {"pgd": {"images": rows}}}}}))
    text = write_report(directory).read_text()
    assert f"- FLAG cnn: more steps weakened a result: {flag}" in text
    assert ("- abs: more steps never weakened a result (pgd with 2x their steps on images [0, 1]: 1 stored "
            "adversarial(s) found again within 5 %)") in text
    assert "FLAG abs: more steps" not in text
    assert "## Distal adversarials\n\n- not part of this evaluation" in text


def test_report_says_when_a_row_ran_only_chosen_attacks(tmp_path, record):
    directory = _directory(tmp_path, record)
    stored = st.read_settings(directory)
    stored["plans"]["abs"]["skipped"] = {"latent_descent": "not selected", "fgsm": "ABS models only"}
    st.write_settings(directory, stored)
    text = write_report(directory).read_text()
    assert "**abs: so far only the attacks chosen with --attacks ran; not yet: latent_descent**" in text
    assert "**cnn:" not in text


def test_cost_per_image_counts_every_attack_of_a_partial_row(tmp_path, record):
    import dataclasses

    st.write_settings(tmp_path, {"preset": "hand", "attacks": {"pgd": {"kind": "gradient", "counts_for": ["l2"]},
                                                               "boundary": {"kind": "decision", "counts_for": ["l2"]}},
                                 "budgets": [], "plans": {"cnn": {"attacks": ["pgd", "boundary"], "skipped": {}}}})
    # boundary (10 s per image) has so far run on 2 of the 4 images pgd (1 s) ran on
    rows = [dataclasses.replace(record("cnn", "pgd", i, distance=1.0, queries=5.0), seconds=1.0) for i in range(4)]
    rows += [dataclasses.replace(record("cnn", "boundary", i, distance=1.0, queries=50.0), seconds=10.0)
             for i in range(2)]
    rec.append_records(tmp_path, rows)
    rec.append_clean(tmp_path, [rec.CleanRecord("cnn", i, 1, 1, None, 0.1) for i in range(4)])
    text = write_report(tmp_path).read_text()
    # 1 + 10 + 0.1 s, 55 queries per image (a mean over images would say 6.1 s, 30 queries)
    assert "| cnn | 2–4 | 2 | 11.10 | 55 | 3.1 h |" in text
