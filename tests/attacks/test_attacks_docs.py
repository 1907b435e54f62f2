"""docs/attacking.md (the README's "Attacking a model") runs as written."""

import re
from pathlib import Path

DOC = Path(__file__).resolve().parents[2] / "docs" / "attacking.md"


def test_attacking_snippet_runs(capsys):
    blocks = re.findall(r"```python\n(.*?)```", DOC.read_text(), flags=re.S)
    assert len(blocks) == 1
    namespace = {}
    exec(compile(blocks[0], str(DOC), "exec"), namespace)  # noqa: S102
    result, best = namespace["result"], namespace["best"]
    assert result.is_adversarial.shape == (3, 16)
    # A linear MNIST model is not robust: at L∞ 0.3 PGD must fool (almost) everything.
    assert result.robust_accuracy[-1] <= 0.1
    assert best.is_adversarial.mean() >= 0.9
    assert namespace["overall"].median("linf") <= best.median("linf")
