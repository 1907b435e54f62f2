"""The package's import-time behaviour: the oneDNN default and its warning, the lazy public names."""

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


def _run(repo_root, code, onednn_variable=None):
    env = {k: v for k, v in os.environ.items() if k != "TF_ENABLE_ONEDNN_OPTS"}
    env["TF_CPP_MIN_LOG_LEVEL"] = "3"
    if onednn_variable is not None:
        env["TF_ENABLE_ONEDNN_OPTS"] = onednn_variable
    proc = subprocess.run([sys.executable, "-c", code], cwd=repo_root, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout.split()


def _probe(repo_root, first, onednn_variable=None):
    enabled, warned = _run(repo_root, PROBE.format(first=first), onednn_variable)[-2:]
    return enabled == "True", warned == "True"


def test_tensorflow_imported_first_warns_exactly_when_onednn_is_off(repo_root):
    enabled, warned = _probe(repo_root, "import tensorflow")
    assert warned == (not enabled)


def test_no_warning_when_abs_tf_comes_first_or_the_user_chose(repo_root):
    assert _probe(repo_root, "") == (True, False)           # abs_tf first: oneDNN on, no warning
    assert _probe(repo_root, "import tensorflow", onednn_variable="0") == (False, False)


def test_onednn_variable_is_set_once_and_a_user_choice_is_kept(repo_root):
    """abs_tf sets the variable (the one place), and never overrides the user's value."""
    code = "import os, abs_tf; print(os.environ['TF_ENABLE_ONEDNN_OPTS'])"
    assert _run(repo_root, code)[-1] == "1"
    assert _run(repo_root, code, onednn_variable="0")[-1] == "0"


def test_public_names_are_lazy_and_resolve(repo_root):
    code = ("import sys, abs_tf; heavy = 'tensorflow' in sys.modules; "
            "from abs_tf import ABS, build_model, load_mnist, load_model; "
            "from abs_tf.models.abs.model import ABS as A; from abs_tf import registry, data; "
            "print(heavy, ABS is A, load_model is registry.load_model, build_model is registry.build_model, "
            "load_mnist is data.load_mnist)")
    assert _run(repo_root, code)[-5:] == ["False", "True", "True", "True", "True"]
