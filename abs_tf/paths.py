"""Where the project's files are: the repository, its shipped weights, and the original release's
reference files (one setting, ``ABS_TF_REFERENCE_DIR``)."""

from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
WEIGHTS_ROOT = REPO_ROOT / "weights"
REFERENCE_DIR_ENV = "ABS_TF_REFERENCE_DIR"
# The original release's weights, latent samples and outputs, read-only beside the repository.
DEFAULT_REFERENCE_DIR = REPO_ROOT.parent / "shared" / "reference" / "abs_official"


def reference_dir() -> Path:
    """The original release's files: ``$ABS_TF_REFERENCE_DIR`` if set (and non-empty), else
    ``../shared/reference/abs_official`` beside the repository. Not checked for existence."""
    value = os.environ.get(REFERENCE_DIR_ENV, "").strip()
    return Path(value) if value else DEFAULT_REFERENCE_DIR


def shipped_weights_dir(name: str) -> Path:
    """``<repo>/weights/<name>``, independent of the working directory."""
    return WEIGHTS_ROOT / name
