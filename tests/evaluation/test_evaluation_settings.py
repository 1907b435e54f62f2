"""Configuration checks, image selection and sharding, settings conflicts, output directories."""

from __future__ import annotations

import numpy as np
import pytest

from abs_tf.evaluation import settings as st
from abs_tf.evaluation.settings import EvaluationConfig


def test_bad_configurations_are_refused_naming_the_field():
    with pytest.raises(ValueError, match="start must be >= 0"):
        EvaluationConfig(start=-5, num_images=3)
    with pytest.raises(ValueError, match="num_images"):
        EvaluationConfig(num_images=0)
    with pytest.raises(ValueError, match="shard_index"):
        EvaluationConfig(shard_index=2, num_shards=2)
    with pytest.raises(ValueError, match="batch_size must be an integer"):
        EvaluationConfig(batch_size=2.5)
    with pytest.raises(ValueError, match="exceeds the 10000 test images"):
        st.select_indices(EvaluationConfig(start=9998, num_images=3), 10000)


def test_shards_are_whole_batches_covering_the_range_once():
    config = dict(start=100, num_images=23, batch_size=4)
    shards = [st.select_indices(EvaluationConfig(shard_index=k, num_shards=3, **config), 10000) for k in range(3)]
    np.testing.assert_array_equal(np.concatenate(shards), np.arange(100, 123))
    assert [len(s) for s in shards] == [8, 8, 7]  # blocks of ceil(23 / 3) = 8 -> whole batches of 4
    np.testing.assert_array_equal(st.select_indices(EvaluationConfig(**config), 10000), np.arange(100, 123))
    # more shards than batches: the last shards are empty, none overlaps
    many = [st.select_indices(EvaluationConfig(shard_index=k, num_shards=8, start=0, num_images=5, batch_size=2),
                              100) for k in range(8)]
    assert sum(len(s) for s in many) == 5 and [len(s) for s in many][-1] == 0


def test_conflicts_name_the_differing_keys_and_growth_is_allowed():
    stored = {"seed": 0, "batch_size": 4, "attacks": {"fgsm": {"norm": "linf", "params": {}}},
              "models": {"cnn": {"start": 0, "num_images": 10}}, "plans": {"cnn": {"attacks": ["fgsm"], "skipped": {}}}}
    grown = {"seed": 0, "batch_size": 4, "attacks": {"fgsm": {"norm": "linf", "params": {}}, "fgm": {"norm": "l2"}},
             "models": {"abs": {"start": 0, "num_images": 3}},
             "plans": {"abs": {"attacks": ["fgsm", "fgm"], "skipped": {}}}}
    assert st.conflicts(stored, grown) == []
    combined = st.combine(stored, grown)
    assert sorted(combined["models"]) == ["abs", "cnn"] and sorted(combined["attacks"]) == ["fgm", "fgsm"]
    other = {**grown, "batch_size": 8, "attacks": {"fgsm": {"norm": "linf", "params": {"steps": 3}}},
             "models": {"cnn": {"start": 0, "num_images": 20, "weights": "weights/cnn"}}}
    problems = st.conflicts(stored, other)
    assert any(p.startswith("batch_size") for p in problems)
    assert any(p.startswith("attacks.fgsm.params.steps") for p in problems)
    assert any(p.startswith("models.cnn.weights") for p in problems)
    assert not any(p.startswith("models.cnn.num_images") for p in problems)


def test_a_models_image_range_may_grow_and_is_stored_covering_all_runs():
    stored = {"seed": 0, "models": {"abs": {"start": 0, "num_images": 10, "weights": "w"}}}
    later = {"seed": 0, "models": {"abs": {"start": 5, "num_images": 25, "weights": "w"}}}
    assert st.conflicts(stored, later) == []
    assert st.combine(stored, later)["models"]["abs"] == {"start": 0, "num_images": 30, "weights": "w"}
    moved = {"seed": 0, "models": {"abs": {"start": 0, "num_images": 10, "weights": "other"}}}
    assert [p.split(" ")[0] for p in st.conflicts(stored, moved)] == ["models.abs.weights"]


def test_adopt_refuses_other_settings_and_keeps_the_stored_ones(tmp_path):
    st.adopt(tmp_path, {"seed": 0, "attacks": {"pgd": {"grid": (0.1, 0.2)}}, "models": {}})
    st.adopt(tmp_path, {"seed": 0, "attacks": {"pgd": {"grid": (0.1, 0.2)}}, "models": {}})  # a resume: agrees
    with pytest.raises(ValueError, match="Differing: seed"):
        st.adopt(tmp_path, {"seed": 1, "attacks": {}, "models": {}})
    assert st.read_settings(tmp_path)["seed"] == 0


def test_unwritable_output_dir_is_refused(tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    with pytest.raises(PermissionError, match="not writable"):
        st.ensure_writable(blocker / "out")


def test_one_writer_per_directory(tmp_path):
    with st.exclusive(tmp_path):
        with pytest.raises(RuntimeError, match="another evaluation"):
            with st.exclusive(tmp_path):
                pass
