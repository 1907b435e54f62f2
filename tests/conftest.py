"""Shared pytest fixtures for abs-tf: repository paths, the MNIST directory, small cached subsets.

Keep this file generic: several test modules share it.
"""

from __future__ import annotations

import os
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# abs_tf before any test module imports TensorFlow, so that its oneDNN setting takes effect.
import abs_tf  # noqa: E402,F401
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from abs_tf.paths import REPO_ROOT, reference_dir as _reference_dir  # noqa: E402


@pytest.fixture(scope="session")
def repo_root() -> Path:
    """The repository root (the directory holding train.py and abs_tf/)."""
    return REPO_ROOT


@pytest.fixture(scope="session")
def reference_dir() -> Path:
    """Exported files of the official PyTorch release (layout.txt, *.npz), from
    `abs_tf.paths.reference_dir` ($ABS_TF_REFERENCE_DIR); skips if absent."""
    directory = _reference_dir()
    if not directory.is_dir():
        pytest.skip(f"reference directory {directory} not available (set $ABS_TF_REFERENCE_DIR)")
    return directory


@pytest.fixture(scope="session")
def mnist_dir() -> Path:
    """The MNIST IDX directory of $ABS_TF_DATA_DIR; fails (not skips) if it is not set up."""
    from abs_tf import data

    directory = data.resolve_data_dir()
    if directory is None or not directory.is_dir():
        pytest.fail(f"set ${data.DATA_DIR_ENV} to a directory of the four MNIST IDX files "
                    f"(got {directory})")
    return directory


@pytest.fixture(scope="session")
def mnist_test(mnist_dir):
    """The full MNIST test split (images float32 [10000,28,28,1], labels int64), loaded once."""
    from abs_tf import data

    return data.load_mnist("test", mnist_dir)


@pytest.fixture(scope="session")
def mnist_train(mnist_dir):
    """The full MNIST training split, loaded once per session (only when a test asks for it)."""
    from abs_tf import data

    return data.load_mnist("train", mnist_dir)


@pytest.fixture(scope="session")
def mnist_test_small(mnist_test):
    """The first 200 test images and labels (read-only views)."""
    images, labels = mnist_test
    return images[:200], labels[:200]

