"""evaluate.py end to end (subprocess): summary.json keys, per-image file, flag validation."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest


def _run(repo_root, args, tmp_path, cwd=None):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    return subprocess.run([sys.executable, str(repo_root / "evaluate.py"), *args], cwd=cwd or repo_root,
                          capture_output=True, text=True, timeout=600, env=env)


def test_evaluate_abs_writes_summary(repo_root, mnist_dir, tmp_path):
    out = tmp_path / "eval"
    # Images 443-447 include two that even full-size ABS misclassifies (445, 447), so the
    # running accuracy changes between batches (the weak ABS here: 1/2, 2/4, 2/5).
    proc = _run(repo_root, ["--model=abs", "--attacks=none", "--start=443", "--num_images=5", "--batch_size=2",
                            "--n_samples=200",
                            "--n_steps=3", f"--data_dir={mnist_dir}", f"--output_dir={out}"], tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["num_images"] == 5
    assert 0.0 <= summary["clean_accuracy"] <= 1.0 and summary["images_per_second"] > 0
    assert summary["config"]["n_samples"] == 200 and summary["config"]["n_steps"] == 3
    assert summary["config"]["loss_scalings"] == [1.0] * 10
    assert summary["config"]["git_commit"]
    per_image = np.load(out / "per_image.npz")
    assert per_image["logits"].shape == (5, 10)
    assert summary["clean_accuracy"] == np.mean(per_image["logits"].argmax(1) == per_image["labels"])
    assert per_image["certified_l2_estimate"].shape == (5,)
    assert summary["certified_l2_estimate_median"] == np.median(per_image["certified_l2_estimate"])
    assert "clean accuracy" in proc.stdout
    # The progress bar's last accuracy is the final one (not an average of running values).
    shown = re.findall(r"accuracy: ([0-9.]+)", proc.stdout)
    assert shown and float(shown[-1]) == round(summary["clean_accuracy"], 4)


def test_evaluate_rejects_unknown_attack_and_too_many_images(repo_root, mnist_dir, tmp_path):
    proc = _run(repo_root, ["--model=cnn", "--attacks=pgd", f"--data_dir={mnist_dir}"], tmp_path)
    assert proc.returncode != 0 and "attacks" in proc.stderr
    proc = _run(repo_root, ["--model=cnn", "--num_images=10001", f"--data_dir={mnist_dir}",
                            f"--output_dir={tmp_path / 'x'}"], tmp_path)
    assert proc.returncode != 0 and "exceeds" in proc.stderr


def test_evaluate_abs_from_another_working_directory(repo_root, mnist_dir, tmp_path):
    """Issue 19 (7): the shipped weights are found from the package, not the working directory."""
    proc = _run(repo_root, ["--model=abs", "--num_images=2", "--n_samples=20", "--n_steps=1",
                            f"--data_dir={mnist_dir}", "--output_dir=out"], tmp_path, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["config"]["weights_dir"] == str(repo_root / "weights" / "abs_vae")
    assert summary["num_images"] == 2 and summary["config"]["n_samples"] == 20


def test_evaluate_baseline_has_no_abs_records(repo_root, mnist_dir, tmp_path):
    """What is recorded comes from the model's registry entry: no bounds or search settings for a CNN."""
    proc = _run(repo_root, ["--model=binary_cnn", "--num_images=20", "--batch_size=8", f"--data_dir={mnist_dir}",
                            f"--output_dir={tmp_path}"], tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["clean_accuracy"] >= 0.9 and "certified_l2_estimate_median" not in summary
    assert "n_samples" not in summary["config"]
    assert "certified_l2_estimate" not in np.load(tmp_path / "per_image.npz").files


@pytest.mark.parametrize("flag, message", [
    ("--n_samples=0", "--n_samples must be >= 1"), ("--n_steps=0", "--n_steps must be >= 1"),
    ("--batch_size=0", "--batch_size must be >= 1"), ("--num_images=0", "--num_images must be >= 1"),
    ("--model=resnet", "--model must be one of the registered models: abs, "),
])
def test_evaluate_flags_are_checked_naming_the_flag(repo_root, tmp_path, flag, message):
    proc = _run(repo_root, [flag, f"--output_dir={tmp_path / 'never'}"], tmp_path)
    assert proc.returncode != 0 and message in proc.stderr, proc.stderr[-2000:]
    assert not (tmp_path / "never").exists()


def test_evaluate_quick_preset_end_to_end_and_resume(repo_root, mnist_dir, tmp_path):
    """Issue 22: --preset=quick on a shipped model writes verified records, a summary and a report;
    the same command again resumes (nothing new to do, same summary); other settings are refused."""
    out = tmp_path / "quick"
    args = ["--model=cnn", "--preset=quick", "--num_images=3", "--batch_size=3", "--substitute=",
            "--determinism_images=0", f"--data_dir={mnist_dir}", f"--output_dir={out}"]
    proc = _run(repo_root, args, tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = (out / "summary.json").read_text()
    records = [json.loads(line) for line in (out / "records.jsonl").read_text().splitlines()]
    assert {r["index"] for r in records} == {0, 1, 2}
    assert (out / "report.md").is_file()
    again = _run(repo_root, args, tmp_path)
    assert again.returncode == 0, again.stderr[-3000:]
    assert (out / "summary.json").read_text() == summary
    assert len((out / "records.jsonl").read_text().splitlines()) == len(records)
    other = _run(repo_root, args + ["--seed=5"], tmp_path)
    assert other.returncode != 0 and "seed" in other.stderr


@pytest.mark.parametrize("flag, message", [("--start=-5", "--start must be >= 0"),
                                           ("--attacks=fgsm", "add --preset=quick")])
def test_evaluate_refuses_bad_attack_runs_before_any_work(repo_root, tmp_path, flag, message):
    proc = _run(repo_root, ["--model=cnn", flag, "--num_images=3", f"--output_dir={tmp_path / 'never'}"], tmp_path)
    assert proc.returncode != 0 and message in proc.stderr, proc.stderr[-2000:]
    assert not (tmp_path / "never").exists()


def test_evaluate_refuses_an_unwritable_output_dir_before_loading_models(repo_root, mnist_dir, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    proc = _run(repo_root, ["--model=cnn", "--preset=quick", "--num_images=3", f"--data_dir={mnist_dir}",
                            f"--output_dir={blocker / 'out'}"], tmp_path)
    assert proc.returncode != 0 and str(blocker) in proc.stderr, proc.stderr[-2000:]
    assert "model cnn ready" not in proc.stderr


def test_evaluate_refuses_a_url_output_dir_without_a_beam_runner(repo_root, mnist_dir, tmp_path):
    proc = _run(repo_root, ["--model=cnn", "--preset=quick", "--num_images=3", f"--data_dir={mnist_dir}",
                            "--output_dir=gs://bucket/t1"], tmp_path)
    assert proc.returncode != 0 and "only a Beam run (--runner=...) writes to URLs" in proc.stderr, proc.stderr[-2000:]
    assert not (tmp_path / "gs:").exists() and "model cnn ready" not in proc.stderr
