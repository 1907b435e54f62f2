"""Run directories: what a training run remembers between invocations, in one place.

A run directory (``train.py --out_dir``) holds

* ``config.json``: the training configuration of the run and the invocation that started it
  (command, git commit). Written once, atomically; a later invocation whose training
  configuration differs is refused, naming each differing value (`open_run`), so that a
  resumed or re-run run never mixes two configurations and its record is never rewritten;
* per unit of training (one class VAE, a classifier, the margin fine-tuning): checkpoints
  under ``ckpt/<unit>`` (`abs_tf.training.loop.fit`, which keeps the unit's training
  configuration beside them and refuses to resume with another) and, when the unit is done,
  its record ``<unit>.json`` (`record_unit`: metrics, per-epoch history and training wall time
  of all invocations together);
* ``summary.json``: the configuration and the records of every finished unit (`write_summary`).
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Iterable, Optional

CONFIG_FILE = "config.json"
SUMMARY_FILE = "summary.json"


class ConfigMismatchError(ValueError):
    """A run directory holds a run of another training configuration."""


def read_json(path) -> dict:
    """The JSON object in ``path``; ValueError naming the file if it is not one."""
    path = Path(path)
    try:
        value = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"{path} is not valid JSON ({e}); it belongs to the run directory {path.parent}. "
                         f"Restore it, or start the run in a new directory") from e
    if not isinstance(value, dict):
        raise ValueError(f"{path} should hold a JSON object, got {type(value).__name__}")
    return value


def write_json(path, value: dict) -> None:
    """Writes ``value`` to ``path`` atomically (a reader never sees half a file)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    with os.fdopen(fd, "w") as f:
        f.write(json.dumps(value, indent=2) + "\n")
    os.replace(tmp, path)


def _normalized(record: dict) -> dict:
    return json.loads(json.dumps(record))  # tuples -> lists, as they come back from a file


def differences(saved: dict, requested: dict) -> list:
    """``"key: <saved> in the run, <requested> now"`` for each key of ``requested`` that differs."""
    saved, requested = _normalized(saved), _normalized(requested)
    missing = "<not recorded>"
    return [f"{k}: {saved.get(k, missing)!r} in the run, {requested[k]!r} now"
            for k in sorted(requested) if saved.get(k, missing) != requested[k]]


def check_same_config(saved: dict, requested: dict, where) -> None:
    """Raises `ConfigMismatchError` naming every training setting in which ``requested``
    differs from the run recorded in ``where``."""
    diffs = differences(saved, requested)
    if diffs:
        raise ConfigMismatchError(
            f"{where} holds a run with another training configuration ({'; '.join(diffs)}). Continuing it "
            f"would mix two configurations in one set of weights: rerun with the run's values, or use a new "
            f"output directory")


def open_run(out_dir, training: dict, extra: Optional[dict] = None) -> dict:
    """Starts or continues the run in ``out_dir``.

    A new run gets ``config.json`` = ``training`` + ``extra`` (evaluation settings, command,
    git commit, ...). An existing one is compared on the ``training`` keys only and refused
    (`ConfigMismatchError`) if any differs; its ``config.json`` is left as it is. Returns the
    run's recorded configuration.
    """
    out_dir = Path(out_dir)
    path = out_dir / CONFIG_FILE
    if path.is_file():
        saved = read_json(path)
        check_same_config(saved, training, path)
        return saved
    record = {**_normalized(training), **_normalized(extra or {})}
    write_json(path, record)
    return record


def finished_record(record_file, outputs: Iterable = ()) -> Optional[dict]:
    """The record of a finished unit (its ``<unit>.json``), or None if the unit has not finished
    (the record or one of its ``outputs``, e.g. the weights file, is missing)."""
    record_file = Path(record_file)
    if not record_file.is_file() or not all(Path(p).is_file() for p in outputs):
        return None
    return read_json(record_file)


def record_unit(record_file, fit_result, metrics: dict) -> dict:
    """Writes a unit's record after a (possibly resumed) `loop.fit`: this call's final
    ``metrics`` with the run's per-epoch history and training wall time, all invocations
    together (kept by `loop.fit` with the checkpoints). Returns the record written."""
    record = {**metrics, "history": fit_result.history, "resumed_from_epoch": fit_result.resumed_from_epoch,
              "train_wall_time_s": fit_result.train_wall_time_s}
    write_json(record_file, record)
    return record


def update_record(record_file, values: dict) -> dict:
    """Adds ``values`` (e.g. evaluation figures) to an existing record; returns it."""
    record = {**read_json(record_file), **values}
    write_json(record_file, record)
    return record


def write_summary(out_dir, results: dict, wall_time_s: float) -> Path:
    """``summary.json``: the run's configuration, every finished unit's record (``results``)
    and this invocation's wall time. Returns its path."""
    out_dir = Path(out_dir)
    path = out_dir / SUMMARY_FILE
    write_json(path, {"config": read_json(out_dir / CONFIG_FILE), "wall_time_s_this_invocation": wall_time_s,
                      "results": results})
    return path
