"""What scripts record next to their outputs: the git commit of the code that produced them."""

from __future__ import annotations

import subprocess

from abs_tf.paths import REPO_ROOT


def git_commit() -> str:
    """HEAD of the repository holding abs_tf (with '+dirty' if it has uncommitted changes),
    or 'unknown' outside a git checkout."""
    try:
        head = subprocess.check_output(["git", "rev-parse", "HEAD"], cwd=REPO_ROOT,
                                       stderr=subprocess.DEVNULL, text=True).strip()
        dirty = subprocess.run(["git", "diff", "--quiet", "HEAD"], cwd=REPO_ROOT,
                               stderr=subprocess.DEVNULL).returncode != 0
        return head + ("+dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
