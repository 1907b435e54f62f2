"""Versioned SavedModel folders, TF Serving's layout: ``<export_base>/<name>/<version>/``.

A version is written to a hidden staging folder beside it (``.<version>.incomplete-<id>``) and
renamed into place when complete, so that a version folder is either complete or absent: an
export killed mid-save leaves only the staging folder, which TF Serving ignores (its name is
not a number), `next_version` skips and `stale_staging_folders` lists. Versions are integers
>= 1 and are never overwritten.
"""

from __future__ import annotations

import os
import shutil
import uuid
from pathlib import Path

import tensorflow as tf

STAGING_MARK = ".incomplete-"


def check_version(version) -> int:
    """``version`` as an int >= 1, else ValueError (TF Serving reads version folders as numbers)."""
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise ValueError(f"version must be an integer >= 1, got {version!r}")
    return version


def model_dir(export_base, name: str) -> Path:
    """``<export_base>/<name>``; NotADirectoryError if a file stands in the way."""
    path = Path(export_base) / name
    for p in (Path(export_base), path):
        if p.exists() and not p.is_dir():
            raise NotADirectoryError(f"export path {p} exists and is not a directory")
    return path


def next_version(directory: Path) -> int:
    """One more than the highest version folder in ``directory`` (1 if none)."""
    versions = [int(p.name) for p in directory.glob("*") if p.is_dir() and p.name.isdigit()]
    return max(versions, default=0) + 1


def stale_staging_folders(directory: Path) -> list:
    """Staging folders left by exports that did not finish (safe to delete when none is running)."""
    return sorted(p for p in directory.glob(f".*{STAGING_MARK}*") if p.is_dir())


def save_version(module: tf.Module, signatures: dict, directory: Path, version=None) -> Path:
    """Saves ``module`` with ``signatures`` as ``directory/<version>`` (default: `next_version`).

    Raises FileExistsError if that version exists (exports are immutable), ValueError for a
    version < 1. Nothing is left at the version's path unless the save completes.
    """
    directory.mkdir(parents=True, exist_ok=True)
    version = next_version(directory) if version is None else check_version(version)
    final = directory / str(version)
    if final.exists():
        raise FileExistsError(f"{final} exists; exported versions are never overwritten: choose another version")
    staging = directory / f".{version}{STAGING_MARK}{uuid.uuid4().hex[:8]}"
    try:
        tf.saved_model.save(module, str(staging), signatures=signatures)
        if final.exists():                      # another export took this version meanwhile
            raise FileExistsError(f"{final} appeared while exporting; exported versions are never overwritten")
        os.rename(staging, final)               # atomic on one file system
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return final
