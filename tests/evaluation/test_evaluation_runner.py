"""run_evaluation end to end on a tiny linear model: resume, shards and merge, refusals, rechecks."""

from __future__ import annotations

import dataclasses
import json
import math
import shutil

import numpy as np
import pytest

from abs_tf.evaluation import presets, records as rec, repeats
from abs_tf.evaluation.merge import merge
from abs_tf.evaluation.recheck import RecordRejected, recheck
from abs_tf.evaluation.report import write_report
from abs_tf.evaluation.runner import SUMMARY_FILE, run_evaluation
from abs_tf.evaluation.settings import EvaluationConfig

# Two cheap attacks, one per norm; 6 images in batches of 2 (image 3 is a clean error).
SMALL = dict(preset="quick", attacks=("fgsm", "deepfool_l2"), num_images=6, batch_size=2, determinism_images=0)


class Calls:
    """A model wrapper counting its calls (to prove that refusals come before any work)."""

    def __init__(self, model):
        self.model, self.calls = model, 0

    def __call__(self, images):
        self.calls += 1
        return self.model(images)


@pytest.fixture(scope="module")
def reference(linear_test_set, tmp_path_factory):
    model, images, labels = linear_test_set
    out = tmp_path_factory.mktemp("reference")
    run_evaluation(EvaluationConfig(**SMALL), {"lin": model}, images, labels, out)
    return out


def test_quick_preset_end_to_end(linear_test_set, tmp_path):
    model, images, labels = linear_test_set
    seen = []
    summary = run_evaluation(EvaluationConfig(preset="quick", num_images=4, batch_size=4), {"lin": model}, images,
                             labels, tmp_path, progress=seen.append)
    stored = json.loads((tmp_path / "settings.json").read_text())
    plan = stored["plans"]["lin"]
    # every attack of the preset either ran or is listed as skipped, with a reason
    assert sorted(plan["attacks"] + list(plan["skipped"])) == sorted(e.name for e in presets.QUICK)
    assert all(plan["skipped"].values())
    records = rec.read_records(tmp_path)
    assert {r.attack for r in records} == set(plan["attacks"]) and len(records) == 4 * len(plan["attacks"])
    assert recheck(records, model, images, root=tmp_path, labels=labels) == []
    lin = summary["models"]["lin"]
    assert lin["clean"] == {"images": 4, "accuracy": 0.75}
    for norm in ("l2", "linf"):
        s = lin["norms"][norm]
        assert s["clean_errors"] == 1 and s["unbroken"] == 0  # a linear model falls to every gradient attack
        assert all(s["median"] <= a["median"] for a in s["attacks"].values())
    assert json.loads((tmp_path / "checks.json").read_text())["lin"]["determinism"]["deterministic"]
    assert {(p.attack, p.done) for p in seen} >= {(a, 4) for a in plan["attacks"]}
    # each attack reports its start before its first batch (a bar's clock then times the attack)
    assert [(p.done, math.isnan(p.queries_per_image)) for p in seen if p.attack == plan["attacks"][0]] == \
        [(0, True), (4, False)]
    report = write_report(tmp_path, images).read_text()
    assert "| lin | 4 | 75 %" in report and "Skipped:" in report
    assert ("- lin: more steps never weakened a result (pgd_linf with 2x their steps on images [0, 1]: 2 stored "
            "adversarial(s) found again within 5 %)") in report
    assert "## Distal adversarials" in report and "| lin | 2 | 5 |" in report
    for name in ("accuracy_curves.png", "gallery_l2.png", "gallery_linf.png", "distal_adversarials.png"):
        assert (tmp_path / name).read_bytes()[:4] == b"\x89PNG"


def test_interrupted_run_resumes_to_the_same_summary(linear_test_set, reference, tmp_path):
    model, images, labels = linear_test_set

    def kill(p):
        if p.attack == "deepfool_l2" and p.done == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_evaluation(EvaluationConfig(**SMALL), {"lin": model}, images, labels, tmp_path, progress=kill)
    first = rec.read_records(tmp_path)
    assert len(first) == 6 + 2 and not (tmp_path / SUMMARY_FILE).exists()
    with open(tmp_path / rec.RECORDS_FILE, "ab") as f:
        f.write(b'{"model": "lin", "attack": "deep')  # and a write cut short by the kill
    counted = Calls(model)
    run_evaluation(EvaluationConfig(**SMALL), {"lin": counted}, images, labels, tmp_path)
    assert (tmp_path / SUMMARY_FILE).read_bytes() == (reference / SUMMARY_FILE).read_bytes()
    again = rec.read_records(tmp_path)
    assert len(again) == 12 and again[:8] == first  # finished images were kept, not redone
    runs = rec.JsonlLog(tmp_path / "runs.jsonl").read()
    assert [r["status"] for r in runs] == ["interrupted", "finished"]


def test_merged_shards_equal_the_unsharded_run(linear_test_set, reference, tmp_path):
    model, images, labels = linear_test_set
    shards = [tmp_path / f"shard{k}" for k in range(2)]
    for k, out in enumerate(shards):
        run_evaluation(EvaluationConfig(**SMALL, shard_index=k, num_shards=2), {"lin": model}, images, labels, out)
    assert {r.index for r in rec.read_records(shards[1])} == {4, 5}
    merge(shards, tmp_path / "merged")
    assert (tmp_path / "merged" / SUMMARY_FILE).read_bytes() == (reference / SUMMARY_FILE).read_bytes()
    merged = rec.read_records(tmp_path / "merged")
    assert recheck(merged, model, images, root=tmp_path / "merged", labels=labels) == []
    with pytest.raises(ValueError, match="already holds records"):
        merge(shards, tmp_path / "merged")


def test_merge_replaces_one_models_row_from_another_directory(linear_test_set, tmp_path):
    # e.g. the binary CNN re-run after its adversarials became nearest preimages: other traits
    model, images, labels = linear_test_set
    config = EvaluationConfig(**SMALL)
    old, new = tmp_path / "old", tmp_path / "new"
    run_evaluation(config, {"lin": model, "other": model}, images, labels, old)
    changed = presets.ModelTraits(adversarial_projection="nearest_preimage")
    run_evaluation(config, {"other": model}, images, labels, new, traits={"other": changed})
    with pytest.raises(ValueError, match="other settings: models.other.traits"):
        merge([old, new], tmp_path / "mixed")
    with pytest.raises(ValueError, match="holds no model nope"):
        merge([old, new], tmp_path / "typo", models={old: ["lin", "nope"]})
    merged = tmp_path / "merged"
    merge([old, new], merged, models={old: ["lin"]})
    settings = json.loads((merged / "settings.json").read_text())
    assert settings["models"]["other"]["traits"]["adversarial_projection"] == "nearest_preimage"
    assert "adversarial_projection" not in settings["models"]["lin"]["traits"]
    def of(root, m):
        return sorted((r for r in rec.read_records(root) if r.model == m), key=lambda r: r.key)

    assert of(merged, "lin") == of(old, "lin") and of(merged, "other") == of(new, "other")
    assert {c.model for c in rec.read_clean(merged)} == {"lin", "other"} and len(rec.read_clean(merged)) == 12
    for m in ("lin", "other"):
        assert recheck(of(merged, m), model, images, root=merged, labels=labels) == []


def test_other_settings_into_the_same_directory_are_refused(linear_test_set, reference, tmp_path):
    model, images, labels = linear_test_set
    out = tmp_path / "copy"
    shutil.copytree(reference, out)
    counted = Calls(model)
    with pytest.raises(ValueError, match=r"Differing: batch_size \(2 stored, 3 now\)"):
        run_evaluation(EvaluationConfig(**{**SMALL, "batch_size": 3}), {"lin": counted}, images, labels, out)
    with pytest.raises(ValueError, match="seed"):
        run_evaluation(EvaluationConfig(**{**SMALL, "seed": 1}), {"lin": counted}, images, labels, out)
    assert counted.calls == 0
    assert json.loads((out / "settings.json").read_text())["batch_size"] == 2


def test_bad_output_dir_and_range_are_refused_before_any_work(linear_test_set, tmp_path):
    model, images, labels = linear_test_set
    counted = Calls(model)
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(PermissionError, match="not writable"):
        run_evaluation(EvaluationConfig(**SMALL), {"lin": counted}, images, labels, blocker / "out")
    with pytest.raises(ValueError, match="exceeds the 10 test images"):
        run_evaluation(EvaluationConfig(**{**SMALL, "start": 8}), {"lin": counted}, images, labels, tmp_path / "x")
    with pytest.raises(ValueError, match="start must be >= 0"):
        EvaluationConfig(**{**SMALL, "start": -5})
    assert counted.calls == 0


def _rewrite(path, change):
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    path.write_text("".join(json.dumps(change(r)) + "\n" for r in rows))


def test_tampered_records_are_rejected(linear_test_set, reference, tmp_path):
    model, images, labels = linear_test_set
    out = tmp_path / "copy"
    shutil.copytree(reference, out)
    records = rec.read_records(out)
    assert recheck(records, model, images, root=out, labels=labels) == []
    target = next(r for r in records if r.success and not r.clean_error and r.attack == "deepfool_l2")

    def smaller(row):  # claims a smaller distance than the stored image has
        if (row["attack"], row["index"]) == (target.attack, target.index):
            row["distances"]["l2"] *= 0.5
        return row

    _rewrite(out / rec.RECORDS_FILE, smaller)
    rejected = recheck(rec.read_records(out), model, images, root=out, strict=False)
    assert [(r.key, "distances" in r.reason) for r in rejected] == [(target.key, True)]
    # resuming into the tampered directory refuses to summarise it
    with pytest.raises(RecordRejected, match="distances"):
        run_evaluation(EvaluationConfig(**SMALL), {"lin": model}, images, labels, out)

    # a stored adversarial replaced by the clean image (and its hash updated): not adversarial
    shutil.rmtree(out)
    shutil.copytree(reference, out)
    indices, shard_labels, adversarials = rec.load_shard(out, target.adversarial_file)
    k = list(indices).index(target.index)
    adversarials[k] = images[target.index]
    rec.write_shard(out, "lin", target.attack, indices, shard_labels, adversarials)
    sha = rec.image_sha256(adversarials[k])
    _rewrite(out / rec.RECORDS_FILE, lambda row: {**row, "adversarial_sha256": sha}
             if (row["attack"], row["index"]) == (target.attack, target.index) else row)
    rejected = recheck(rec.read_records(out), model, images, root=out, strict=False)
    assert len(rejected) == 1 and "not adversarial" in rejected[0].reason

    # a wrong label; a success without stored image; a failure that claims distances
    forged = [r for r in rec.read_records(out) if r.key != target.key][:3]
    forged[0] = dataclasses.replace(forged[0], label=(forged[0].label + 1) % 10)
    forged[1] = dataclasses.replace(forged[1], adversarial_file=None)
    forged[2] = dataclasses.replace(forged[2], success=False, adversarial_file=None, adversarial_sha256=None)
    reasons = [r.reason for r in recheck(forged, model, images, root=out, labels=labels, strict=False)]
    assert len(reasons) == 3
    assert "label" in reasons[0] and "without a stored adversarial" in reasons[1] and "finite distances" in reasons[2]


def test_an_attack_registered_later_joins_a_resumed_run(linear_test_set, monkeypatch, tmp_path):
    from abs_tf import attacks
    from abs_tf.attacks.decision import SaltAndPepper

    model, images, labels = linear_test_set
    config = EvaluationConfig(preset="quick", attacks=("fgsm", "salt_and_pepper"), num_images=2, batch_size=2,
                              determinism_images=0)
    monkeypatch.delitem(attacks.ATTACKS, "salt_and_pepper", raising=False)
    first = run_evaluation(config, {"lin": model}, images, labels, tmp_path)
    assert "l0" not in first["models"]["lin"]["norms"]
    monkeypatch.setitem(attacks.ATTACKS, "salt_and_pepper", SaltAndPepper)
    second = run_evaluation(config, {"lin": model}, images, labels, tmp_path)
    l0 = second["models"]["lin"]["norms"]["l0"]
    assert l0["images"] == 2 and l0["attacks"]["salt_and_pepper"]["success_rate"] == 1.0
    assert second["models"]["lin"]["norms"]["linf"] == first["models"]["lin"]["norms"]["linf"]
    assert recheck(rec.read_records(tmp_path), model, images, root=tmp_path) == []


def test_more_steps_never_weaken_pgd_and_a_weakened_result_is_flagged(linear_test_set, monkeypatch, tmp_path):
    model, images, labels = linear_test_set
    config = EvaluationConfig(preset="quick", attacks=("pgd_linf",), num_images=4, batch_size=2, determinism_images=2)
    run_evaluation(config, {"lin": model}, images, labels, tmp_path)
    checks = json.loads((tmp_path / "checks.json").read_text())["lin"]
    check = checks["more_steps"]
    assert checks["rechecked_records"] == 0                 # a first run has nothing earlier to re-verify
    assert check["checked"] and check["held"] and check["attacks"] == ["pgd_linf"] and check["images"] == [0, 1]
    assert check["per_attack"]["pgd_linf"]["steps"] == 2 * presets.QUICK[1].params["steps"]
    rows = check["per_attack"]["pgd_linf"]["images"]
    assert [r["image"] for r in rows] == [0, 1] and all(0 < r["more_steps"] <= 1.05001 * r["stored"] for r in rows)
    assert all(r["epsilon"] == pytest.approx(1.05 * r["stored"]) for r in rows)
    # records claiming half the distance each image really needs: more steps now look weaker
    halved = [dataclasses.replace(r, distances={n: d / 2 for n, d in r.distances.items()})
              for r in rec.read_records(tmp_path)]
    plan = presets.plan(presets.QUICK, presets.traits_of(model), only=("pgd_linf",))
    flagged = repeats.more_steps("lin", model, plan, None, images, labels, np.arange(4), config, halved)
    assert not flagged["held"] and [f.split(":")[0] for f in flagged["weakened"]] == [
        "pgd_linf on image 0", "pgd_linf on image 1"]
    assert all(r["weakened"] for r in flagged["per_attack"]["pgd_linf"]["images"])
    # a resumed run reuses the stored outcome (ABS: minutes) instead of repeating the attacks
    monkeypatch.setattr(repeats, "more_steps_entry", lambda *a: pytest.fail("more-steps check repeated"))
    run_evaluation(config, {"lin": model}, images, labels, tmp_path)
    again = json.loads((tmp_path / "checks.json").read_text())["lin"]
    assert again["more_steps"] == check and again["rechecked_records"] == 4


def test_weakened_means_larger_beyond_the_tolerance_or_lost():
    pgd = dataclasses.replace(presets.QUICK[1], max_queries=500.0)
    before = dict(pgd.params)
    more = repeats.more_steps_entry(pgd, 2)
    assert (more.params, more.max_queries, more.grid) == ({**before, "steps": 2 * before["steps"]}, 1000.0, pgd.grid)
    assert pgd.params == before                            # the preset's own entry is left alone
    grid = repeats.focused_grid(dataclasses.replace(pgd, grid=(0.1, 0.2, 0.3)), 0.15)
    assert grid == pytest.approx((0.1575, 0.2, 0.3))       # the stored distance + 5 %, then the grid above it
    assert not repeats.weakened(1.0, 1.04) and repeats.weakened(1.0, 1.06)
    assert repeats.weakened(1.0, float("inf"))            # found before, not found with more steps
    assert not repeats.weakened(float("inf"), 2.0) and not repeats.weakened(0.0, 0.0)


def test_merged_checks_keep_any_sources_flag():
    held = {"checked": True, "attacks": ["pgd_l2"], "images": [0, 1], "factor": 2, "tolerance": 0.05, "held": True,
            "weakened": [], "per_attack": {"pgd_l2": {"steps": 100, "norm": "l2", "images": [
                {"image": 0, "stored": 1.0, "epsilon": 1.05, "more_steps": 1.0, "weakened": False}]}}}
    flag = "pgd_l2 on image 16: 1 stored, none found with 2x the steps"
    weak = {**held, "images": [16, 17], "held": False, "weakened": [flag], "per_attack": {"pgd_l2": {
        "steps": 100, "norm": "l2", "images": [{"image": 16, "stored": 1.0, "epsilon": 1.05, "more_steps": None,
                                                "weakened": True}]}}}
    deterministic = {"checked": True, "deterministic": True}
    combined = repeats.combine_checks({"more_steps": weak, "determinism": {"checked": True, "deterministic": False}},
                                      {"more_steps": held, "determinism": deterministic})
    assert combined["more_steps"]["weakened"] == [flag] and not combined["more_steps"]["held"]
    assert combined["more_steps"]["images"] == [0, 1, 16, 17]
    assert [r["image"] for r in combined["more_steps"]["per_attack"]["pgd_l2"]["images"]] == [16, 0]
    assert combined["determinism"]["deterministic"] is False
    assert repeats.combine_checks({"more_steps": held}, {"more_steps": held})["more_steps"]["held"]
