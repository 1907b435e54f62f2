"""Distal adversarials per model in an evaluation: made once, resumed, sharded and merged, and
settings.json directories made before them still resume."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import tensorflow as tf

from abs_tf.evaluation import distal, presets, runner, settings as st
from abs_tf.evaluation.merge import merge
from abs_tf.evaluation.runner import DISTAL_SETTING, SUMMARY_FILE, run_evaluation
from abs_tf.evaluation.settings import EvaluationConfig

CONFIG = dict(preset="quick", num_images=4, batch_size=2, determinism_images=0)
BUDGET = presets.DISTAL["quick"]


def test_every_preset_has_a_distal_budget_and_more_steps_attacks_with_steps():
    for name, entries in presets.PRESETS.items():
        assert presets.DISTAL[name].images > 0 and presets.DISTAL[name].steps > 0
        by_name = {e.name: e for e in entries}
        for attack in presets.MORE_STEPS[name]:      # a typo here would silently skip the check
            assert attack in by_name and "steps" in by_name[attack].params and by_name[attack].kind == "gradient"
    assert {"pgd_linf", "pgd_l2"} <= set(presets.MORE_STEPS["table1"])


def test_distal_adversarials_are_made_once_stored_and_not_repeated_on_resume(linear_test_set, monkeypatch, tmp_path):
    model, images, labels = linear_test_set
    seen = []
    summary = run_evaluation(EvaluationConfig(**CONFIG), {"lin": model}, images, labels, tmp_path,
                             progress=seen.append)
    row = json.loads((tmp_path / "distal" / "lin.json").read_text())
    stored = distal.load(tmp_path, "lin")
    np.testing.assert_array_equal(stored["targets"], np.arange(BUDGET.images) % 10)
    assert row["images"] == BUDGET.images and row["steps_budget"] == BUDGET.steps and row["gradient"] == "model's own"
    # the stored probabilities are the model's on the stored images (what the report shows)
    again = tf.nn.softmax(model(stored["images"])).numpy()
    np.testing.assert_allclose(stored["probabilities"], again, atol=1e-6)
    p = again[np.arange(BUDGET.images), stored["targets"]]
    assert row["mean_probability"] == pytest.approx(float(np.mean(p)), abs=1e-6)
    np.testing.assert_array_equal(stored["reached"], p >= BUDGET.threshold)
    assert row["reached_fraction"] == pytest.approx(float(np.mean(p >= BUDGET.threshold)))
    assert summary["distal"]["lin"] == {k: v for k, v in row.items() if k != "seconds"}
    assert (DISTAL_SETTING, BUDGET.images) in {(p.attack, p.done) for p in seen}
    assert json.loads((tmp_path / "settings.json").read_text())["attacks"][DISTAL_SETTING] == BUDGET.describe()

    def fail(*args, **kwargs):
        raise AssertionError("distal adversarials made twice")

    before = (tmp_path / SUMMARY_FILE).read_bytes()
    monkeypatch.setattr(distal, "distal_adversarials", fail)
    run_evaluation(EvaluationConfig(**CONFIG), {"lin": model}, images, labels, tmp_path)
    assert (tmp_path / SUMMARY_FILE).read_bytes() == before


def test_a_model_without_input_gradient_gets_estimated_gradients(linear_test_set, tmp_path):
    model, _, _ = linear_test_set
    row = distal.run_distal("blind", lambda x: tf.stop_gradient(model(x)), BUDGET, seed=0, root=tmp_path)
    assert row["gradient"].startswith("estimated") and distal.done(tmp_path, "blind")
    assert distal.run_distal("off", model, presets.DistalBudget(), seed=0, root=tmp_path) == {}
    assert not distal.done(tmp_path, "off")


def test_only_shard_0_makes_them_and_merge_carries_them(linear_test_set, tmp_path):
    model, images, labels = linear_test_set
    shards = [tmp_path / f"shard{k}" for k in range(2)]
    for k, out in enumerate(shards):
        run_evaluation(EvaluationConfig(**CONFIG, shard_index=k, num_shards=2), {"lin": model}, images, labels, out)
    assert distal.done(shards[0], "lin") and not (shards[1] / "distal").exists()
    whole = tmp_path / "whole"
    run_evaluation(EvaluationConfig(**CONFIG), {"lin": model}, images, labels, whole)
    merged = merge(shards[::-1], tmp_path / "merged")          # shard 0 last: carried wherever it comes
    assert merged["distal"] == json.loads((whole / SUMMARY_FILE).read_text())["distal"]
    assert (tmp_path / "merged" / SUMMARY_FILE).read_bytes() == (whole / SUMMARY_FILE).read_bytes()
    # two sources with different distal adversarials for one model are refused
    copy = tmp_path / "copy"
    shutil.copytree(shards[0], copy)
    forged = distal.load(copy, "lin")
    forged["images"] = np.clip(forged["images"] + 0.01, 0, 1)
    np.savez(distal.paths(copy, "lin")[0], **forged)
    with pytest.raises(ValueError, match="distal adversarials of lin differ"):
        merge([shards[0], copy], tmp_path / "refused")


def _settings(preset):
    config = EvaluationConfig(preset=preset, num_images=10)
    traits = {"cnn": presets.ModelTraits()}
    plans = {"cnn": presets.plan(presets.get_preset(preset), traits["cnn"])}
    return json.loads(json.dumps(runner._settings(config, ["cnn"], traits, plans, {"cnn": {"weights": "w"}})))


@pytest.mark.parametrize("preset", ["quick", "table1"])
def test_a_directory_made_before_the_distal_budget_still_resumes(preset, tmp_path):
    new = _settings(preset)
    old = json.loads(json.dumps(new))
    del old["attacks"][DISTAL_SETTING]                       # settings.json as written before distal existed
    st.write_settings(tmp_path, old)
    assert st.adopt(tmp_path, new)["attacks"][DISTAL_SETTING] == presets.DISTAL[preset].describe()
    assert st.adopt(tmp_path, new) == st.read_settings(tmp_path)   # and a later resume agrees with itself
    other = json.loads(json.dumps(new))
    other["attacks"][DISTAL_SETTING]["params"]["steps"] += 1
    with pytest.raises(ValueError, match=f"attacks.{DISTAL_SETTING}.params.steps"):
        st.adopt(tmp_path, other)


def test_a_run_of_chosen_attacks_makes_no_distal_adversarials(linear_test_set, tmp_path):
    model, images, labels = linear_test_set
    run_evaluation(EvaluationConfig(**CONFIG, attacks=("fgsm",)), {"lin": model}, images, labels, tmp_path)
    assert not distal.done(tmp_path, "lin") and not (tmp_path / "distal").exists()
