"""The export driver (export/export_savedmodel.py) end to end: flags, versions, refusals.

The library behind it is tested in tests/export/."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest


def _run(repo_root, cwd, *args):
    return subprocess.run([sys.executable, str(repo_root / "export" / "export_savedmodel.py"), *args], cwd=cwd,
                          capture_output=True, text=True, timeout=600)


def test_export_and_refuse_to_overwrite_from_another_directory(repo_root, tmp_path):
    """The README command from another working directory (the registry finds the shipped
    weights); the same version again is refused and left as it was."""
    proc = _run(repo_root, tmp_path, "--model=madry", "--export_base=exports", "--version=3")
    assert proc.returncode == 0, proc.stderr[-2000:]
    version = tmp_path / "exports" / "madry" / "3"
    assert f"exported madry to {version.relative_to(tmp_path)}" in proc.stdout
    before = (version / "saved_model.pb").read_bytes()
    proc = _run(repo_root, tmp_path, "--model=madry", "--export_base=exports", "--version=3")
    assert proc.returncode != 0 and "exported versions are never overwritten" in proc.stderr
    assert (version / "saved_model.pb").read_bytes() == before
    assert sorted(p.name for p in version.parent.iterdir()) == ["3"]


@pytest.mark.parametrize("flag, message", [
    ("--version=-1", "flag --version=-1: -1 is not a positive integer"),
    ("--version=0", "flag --version=0: 0 is not a positive integer"),
    ("--model=resnet", "flag --model=resnet: value should be one of <abs|"),
], ids=["version_-1", "version_0", "unknown_model"])
def test_bad_flags_are_refused_before_any_work(repo_root, tmp_path, flag, message):
    args = ["--model=cnn", f"--export_base={tmp_path}"] + [flag]
    proc = _run(repo_root, tmp_path, *args)
    assert proc.returncode != 0
    assert message in proc.stderr, proc.stderr[-2000:]
    assert not any(tmp_path.glob("*/*")), "nothing is written for a refused export"


def test_abs_search_flags_are_fixed_in_the_export(repo_root, tmp_path):
    proc = _run(repo_root, tmp_path, "--model=abs", "--export_base=exports", "--n_samples=20", "--n_steps=2",
                "--projection=original")
    assert proc.returncode == 0, proc.stderr[-2000:]
    settings = json.loads((tmp_path / "exports" / "abs" / "1" / "assets" / "abs_config.json").read_text())
    assert settings["abs_search"]["n_samples"] == 20 and settings["abs_search"]["n_steps"] == 2
    assert settings["abs_search"]["projection"] == "original" and settings["abs_tf_commit"]
    # The release's ABS has its own 8000 samples: --n_samples is refused, naming it.
    proc = _run(repo_root, tmp_path, "--model=abs_official", "--export_base=exports", "--n_samples=20")
    assert proc.returncode != 0 and "does not accept the option(s) n_samples" in proc.stderr
