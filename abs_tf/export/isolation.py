"""Running code in a fresh Python process in which abs_tf cannot be imported: what a serving
client has (TensorFlow, no abs-tf), to check that an export stands on its own.

The child runs with ``-I`` (no working directory, no PYTHON* variables on its path), from a
directory outside the repository, and first removes an editable install of abs_tf (its import
hook, and every path entry holding an ``abs_tf`` folder); it then asserts that ``import abs_tf``
fails, and, after the given code ran, that no ``abs_tf`` module was imported.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile

_PREAMBLE = """
import importlib, os, sys
sys.meta_path[:] = [f for f in sys.meta_path if not getattr(f, "__module__", "").startswith("__editable__")]
sys.path_hooks[:] = [h for h in sys.path_hooks if not getattr(h, "__module__", "").startswith("__editable__")]
sys.path[:] = [p for p in sys.path if p and not os.path.isdir(os.path.join(p, "abs_tf"))]
importlib.invalidate_caches()
try:
    import abs_tf
except ImportError:
    pass
else:
    raise SystemExit("abs_tf is importable in the isolated process: " + str(abs_tf.__file__))
"""
_EPILOGUE = """
_leaked = sorted(m for m in sys.modules if m == "abs_tf" or m.startswith("abs_tf."))
if _leaked:
    raise SystemExit("abs_tf modules were imported: " + ", ".join(_leaked))
"""


def run_without_abs_tf(code: str, timeout: float = 600, env=None) -> subprocess.CompletedProcess:
    """Runs ``code`` (Python source) in a fresh interpreter where abs_tf is not importable.

    Returns the completed process (text stdout/stderr; check ``returncode``). ``env`` adds
    environment variables (e.g. ``TF_CPP_MIN_LOG_LEVEL``).
    """
    with tempfile.TemporaryDirectory() as cwd:
        return subprocess.run([sys.executable, "-I", "-c", _PREAMBLE + code + _EPILOGUE], cwd=cwd,
                              env={**os.environ, **(env or {})}, capture_output=True, text=True, timeout=timeout)
