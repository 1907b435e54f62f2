"""The package's import layers: every import inside abs_tf points down (or sideways within a layer).

  evaluation -> training -> attacks, export -> models (with registry) -> constants, paths, checks, data, run_info

and no module grows past the size a reader can take in at once.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "abs_tf"
LAYERS = {"base": 0, "models": 1, "attacks": 2, "export": 2, "training": 3, "evaluation": 4}
MAX_LINES = 420


def _layer(module: str) -> int:
    parts = module.split(".")
    if len(parts) < 2:
        return LAYERS["base"]
    head = parts[1]
    if head == "registry":
        return LAYERS["models"]
    return LAYERS.get(head, LAYERS["base"])


def _modules():
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE.parent).with_suffix("")
        name = ".".join(rel.parts[:-1] if rel.name == "__init__" else rel.parts)
        yield name, path


def _imports(path: Path):
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("abs_tf"):
            if node.module == "abs_tf":   # `from abs_tf import data, registry`: each name is a module
                yield from (f"abs_tf.{alias.name}" for alias in node.names)
            else:
                yield node.module
        elif isinstance(node, ast.Import):
            yield from (a.name for a in node.names if a.name.startswith("abs_tf"))


def test_imports_point_down_the_layers():
    upward = []
    for name, path in _modules():
        if name == "abs_tf":  # the package's lazy public names may reach any layer
            continue
        for target in _imports(path):
            if _layer(target) > _layer(name):
                upward.append(f"{name} imports {target}")
    assert not upward, "imports against the layering:\n" + "\n".join(upward)


def test_layer_check_sees_an_upward_import():
    # The check above must be able to fail: a models module importing training is upward.
    assert _layer("abs_tf.training.vae") > _layer("abs_tf.models.abs.model")
    assert _layer("abs_tf.registry") == _layer("abs_tf.models.cnn") < _layer("abs_tf.attacks.base")


def test_no_module_is_too_long():
    long = {name: n for name, path in _modules() if (n := len(path.read_text().splitlines())) > MAX_LINES}
    assert not long, f"modules over {MAX_LINES} lines: {long}"
