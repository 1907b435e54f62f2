"""Training configurations (abs_tf/training/config.py) and train.py's flags: bad values are
refused before any work starts, with a message naming the flag and its allowed range."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from abs_tf.training import config as cfg


def test_range_contains_and_describe():
    assert cfg.Range(0, 1).describe() == "in [0, 1]" and cfg.Range(0, 1).contains(0) and cfg.Range(0, 1).contains(1)
    assert not cfg.Range(0, 1).contains(1.01) and not cfg.Range(0, 1).contains(float("nan"))
    positive = cfg.Range(0, low_open=True)
    assert positive.describe() == "> 0" and not positive.contains(0) and positive.contains(1e-9)
    count = cfg.Range(1, integer=True)
    assert count.describe() == "an integer >= 1" and count.contains(3) and not count.contains(2.5)
    assert not count.contains(True)  # a bool is not a count
    assert cfg.Range(0, 60000, integer=True).describe() == "an integer in 0..60000"
    assert cfg.Range(0, 1, low_open=True).describe() == "in (0, 1]"


@pytest.mark.parametrize("make,field,expected", [
    (lambda: cfg.VAETrainingConfig(beta=-1.0), "beta", "must be > 0, got -1.0"),
    (lambda: cfg.VAETrainingConfig(augment_probability=2.0), "augment_probability", "must be in [0, 1], got 2.0"),
    (lambda: cfg.VAETrainingConfig(seed=-1), "seed", "must be an integer in 0.."),
    (lambda: cfg.VAETrainingConfig(classes=()), "classes", "at least one"),
    (lambda: cfg.VAETrainingConfig(classes=(1, 1)), "classes", "distinct digits"),
    (lambda: cfg.VAETrainingConfig(epochs=0), "epochs", "must be an integer >= 1, got 0"),
    (lambda: cfg.MarginFineTuneConfig(init_from="x", margin_pool_ratio=1.0), "margin_pool_ratio", "must be > 1"),
    (lambda: cfg.MarginFineTuneConfig(), "init_from", "directory of the ten"),
    (lambda: cfg.classifier_config("madry", adv_step_size=0.5), "adv_step_size", "must be <= adv_eps (0.3)"),
    (lambda: cfg.classifier_config("cnn", train_images=70000), "train_images", "in 0..60000"),
    (lambda: cfg.classifier_config("cnn", schedule="step"), "schedule", "one of ('cosine', 'triangular')"),
])
def test_configs_name_the_bad_field_and_its_range(make, field, expected):
    with pytest.raises(cfg.ConfigValueError) as info:
        make()
    assert info.value.field == field and expected in str(info.value), str(info.value)


def test_classifier_defaults_per_model_and_training_record():
    madry = cfg.classifier_config("madry")
    assert (madry.epochs, madry.schedule, madry.adversarial, madry.adv_steps, madry.adv_step_size) == \
        (3, "triangular", True, 4, 0.1)
    cnn = cfg.classifier_config("cnn", epochs=None, seed=2)  # None: the model's default
    assert (cnn.epochs, cnn.augment, cnn.adversarial, cnn.seed) == (5, True, False, 2)
    # evaluation settings and unused attack settings are not part of what determines the weights
    assert "monitor_images" not in madry.training_record() and madry.training_record()["adv_steps"] == 4
    assert "adv_steps" not in cnn.training_record()
    vae = cfg.VAETrainingConfig(classes=[3, 1])
    assert vae.classes == (3, 1) and "classes" not in vae.training_record() and vae.class_seed(3) == 3
    assert cfg.MarginFineTuneConfig(init_from="d").training_record()["fine_tune"] == "class_margin"
    with pytest.raises(ValueError, match="model must be one of"):
        cfg.classifier_config("abs")


# --------------------------------------------------------------------------- train.py's flags

_PARSE = """
import json, sys
from absl import flags
sys.argv = ["train.py"]
import train
out = {}
for case in json.loads(sys.argv_cases):
    train.FLAGS.unparse_flags()
    try:
        train.FLAGS(["train.py", *case])
        train._config(train._procedure())
        out[" ".join(case)] = "accepted"
    except (flags.Error, train.app.UsageError) as e:
        out[" ".join(case)] = str(e)
print(json.dumps(out))
"""

BAD_FLAGS = {
    "--classes=": "--classes must be distinct digits 0..9, at least one",
    "--classes=1,12": "--classes must be distinct digits 0..9",
    "--augment_probability=2": "--augment_probability must be in [0, 1]",
    "--augment_probability=-0.1": "--augment_probability must be in [0, 1]",
    "--seed=-1": "--seed must be an integer in 0..",
    "--beta=-1": "--beta must be > 0",
    "--beta=0": "--beta must be > 0",
    "--epochs=0": "--epochs must be an integer >= 1",
    "--model=madry --adv_step_size=0.5": "--adv_step_size must be <= adv_eps (0.3)",
    "--model=cnn --beta=0.5": "--beta does not apply to --model=cnn",
    "--fine_tune=class_margin": "--fine_tune=class_margin fine-tunes trained VAEs",
    "--model=cnn --fine_tune=class_margin --init_from=d": "pass --model=vae",
}


def test_train_py_refuses_bad_flags_naming_flag_and_range(repo_root):
    cases = [c.split() for c in BAD_FLAGS] + [["--model=madry", "--adv_steps=8", "--adv_step_size=0.05"],
                                              ["--fine_tune=class_margin", "--init_from=d", "--margin_alpha=10"]]
    code = _PARSE.replace("sys.argv_cases", repr(json.dumps(cases)))
    proc = subprocess.run([sys.executable, "-c", code], cwd=repo_root, capture_output=True, text=True, timeout=120,
                          env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    got = json.loads(proc.stdout.strip().splitlines()[-1])
    for case, expected in BAD_FLAGS.items():
        assert expected in got[case], (case, got[case])
    assert got["--model=madry --adv_steps=8 --adv_step_size=0.05"] == "accepted"
    assert got["--fine_tune=class_margin --init_from=d --margin_alpha=10"] == "accepted"


def test_train_py_bad_flag_exits_before_any_work(repo_root, tmp_path):
    proc = subprocess.run([sys.executable, str(repo_root / "train.py"), "--classes=", f"--out_dir={tmp_path / 'x'}"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=120,
                          env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    assert proc.returncode != 0 and "--classes must be distinct digits 0..9, at least one" in proc.stderr
    assert not (tmp_path / "x").exists()
