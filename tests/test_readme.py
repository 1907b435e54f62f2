"""README's attack example runs as written and its objects say what the comments claim."""

from __future__ import annotations

from pathlib import Path

import numpy as np

README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_attack_example_runs(mnist_dir, capsys):
    section = README.read_text().split("## Attacking a model", 1)[1].split("\n## ", 1)[0]
    code = section.split("```python\n", 1)[1].split("```", 1)[0]
    namespace: dict = {}
    exec(compile(code, str(README), "exec"), namespace)
    result, best, overall = namespace["result"], namespace["best"], namespace["overall"]
    assert result.is_adversarial.shape == (3, 16)
    assert np.all(np.diff(result.robust_accuracy) <= 0)          # larger epsilon, never more robust
    assert np.all(overall.distances["linf"] <= best.distances["linf"] + 1e-6)   # best-of is at least as small
    assert np.isfinite(overall.median("linf"))
