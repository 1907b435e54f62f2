"""Helper scripts: the parts with logic of their own."""

from __future__ import annotations

import importlib.util

import numpy as np


def _load_script(repo_root, name):
    spec = importlib.util.spec_from_file_location(name, repo_root / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_hard_indices_union_of_runs_below_ratio(repo_root, tmp_path):
    script = _load_script(repo_root, "compare_vaes_on_hard_images")
    labels = np.array([0, 1, 2])
    # class losses (logits are their negatives); own class first in each row's label position
    run_a = np.array([[0.010, 0.011, 0.05],    # image 10: wrong/own = 1.1 -> hard
                      [0.050, 0.010, 0.05],    # image 11: 5.0 -> easy
                      [0.020, 0.030, 0.04]])   # image 12: 0.5 -> misclassified, hard
    run_b = run_a.copy()
    run_b[1] = [0.012, 0.010, 0.05]            # image 11 hard in run b only (1.2)
    for name, losses in (("a", run_a), ("b", run_b)):
        np.savez(tmp_path / f"{name}.npz", logits=-losses, labels=labels, indices=np.array([10, 11, 12]))
    assert script.hard_indices([tmp_path / "a.npz"], 1.25).tolist() == [10, 12]
    assert script.hard_indices([tmp_path / "a.npz", tmp_path / "b.npz"], 1.25).tolist() == [10, 11, 12]
    assert script.hard_indices([tmp_path / "a.npz"], 1.05).tolist() == [12]
