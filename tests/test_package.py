"""The package's import-time behaviour: the oneDNN default and its warning."""

from __future__ import annotations

import os
import subprocess
import sys

PROBE = """
import warnings
{first}
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    import abs_tf
from tensorflow.python.util import _pywrap_util_port
print(_pywrap_util_port.IsMklEnabled(), any("oneDNN" in str(w.message) for w in caught))
"""


def _probe(repo_root, first, onednn_variable=None):
    env = {k: v for k, v in os.environ.items() if k != "TF_ENABLE_ONEDNN_OPTS"}
    env["TF_CPP_MIN_LOG_LEVEL"] = "3"
    if onednn_variable is not None:
        env["TF_ENABLE_ONEDNN_OPTS"] = onednn_variable
    proc = subprocess.run([sys.executable, "-c", PROBE.format(first=first)], cwd=repo_root, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    enabled, warned = proc.stdout.split()[-2:]
    return enabled == "True", warned == "True"


def test_tensorflow_imported_first_warns_exactly_when_onednn_is_off(repo_root):
    enabled, warned = _probe(repo_root, "import tensorflow")
    assert warned == (not enabled)


def test_no_warning_when_abs_tf_comes_first_or_the_user_chose(repo_root):
    assert _probe(repo_root, "") == (True, False)           # abs_tf first: oneDNN on, no warning
    assert _probe(repo_root, "import tensorflow", onednn_variable="0") == (False, False)
