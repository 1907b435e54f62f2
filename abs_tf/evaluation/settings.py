"""An evaluation's configuration, its output directory and the run-settings file that keeps one
directory to one set of settings.

``settings.json`` holds what decides the records: the preset and its attacks' budgets, the
seed, the batch size (queries are attributed per model call), the sharding, and per model its
settings (from the driver: weights, options), traits and image range. A later run into the
same directory must agree on every value it shares with the stored settings (a model or an
attack not seen before may be added: a newly registered attack joins a resumed run; a model's
image range may grow: records are per image, so a row evaluated on 10 images can later be
extended to 30 with the same settings); a run that differs is refused with the differing keys
named, so results are never mixed.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
from pathlib import Path

import numpy as np

from abs_tf.evaluation.records import write_atomic

SETTINGS_FILE = "settings.json"
SETTINGS_FORMAT = 1
# Sections where new keys may be added by a later run (values of shared keys must agree).
GROWING_SECTIONS = ("attacks", "models")
# Rewritten by every run (what ran, what was skipped and why): informational, not compared.
INFORMATIONAL_SECTIONS = ("plans", "budgets")
# Per model: the image range, which may grow (stored: the range covering every run's images).
RANGE_KEYS = ("start", "num_images")


@dataclasses.dataclass(frozen=True)
class EvaluationConfig:
    """What to evaluate (the driver maps its flags here).

    preset: a name of `abs_tf.evaluation.presets.PRESETS`. attacks: optional subset of the
    preset's attack names. start, num_images: the test images [start, start + num_images).
    batch_size: images per attack call (ABS's queries are batched across them). seed: every
    attack call's seed. shard_index, num_shards: this process evaluates block shard_index of
    num_shards contiguous blocks of the images (blocks are whole batches, so a shard's batches
    are the unsharded run's). recheck: re-verify the records found from earlier runs before
    summarising. determinism_images: images on which each model's first attack is repeated
    (0: skip the check). command: the driver's command line (logged in runs.jsonl).
    """

    preset: str = "quick"
    attacks: tuple = None
    start: int = 0
    num_images: int = 100
    batch_size: int = 16
    seed: int = 0
    shard_index: int = 0
    num_shards: int = 1
    recheck: bool = True
    determinism_images: int = 2
    command: str = ""

    def __post_init__(self):
        def require(ok, message):
            if not ok:
                raise ValueError(message)

        for name in ("start", "num_images", "batch_size", "seed", "shard_index", "num_shards", "determinism_images"):
            value = getattr(self, name)
            require(isinstance(value, (int, np.integer)) and not isinstance(value, bool),
                    f"{name} must be an integer, got {value!r}")
        require(self.start >= 0, f"start must be >= 0 (index of the first test image), got {self.start}")
        require(self.num_images >= 1, f"num_images must be >= 1, got {self.num_images}")
        require(self.batch_size >= 1, f"batch_size must be >= 1 (images per attack call), got {self.batch_size}")
        require(self.num_shards >= 1, f"num_shards must be >= 1, got {self.num_shards}")
        require(0 <= self.shard_index < self.num_shards,
                f"shard_index must be in [0, num_shards) = [0, {self.num_shards}), got {self.shard_index}")
        require(self.determinism_images >= 0, f"determinism_images must be >= 0, got {self.determinism_images}")
        if self.attacks is not None:
            object.__setattr__(self, "attacks", tuple(self.attacks))
            require(len(self.attacks) > 0, "attacks: give at least one attack name, or None for the whole preset")


def select_indices(config: EvaluationConfig, dataset_size: int) -> np.ndarray:
    """int64 test-set indices of this shard (module doc of `EvaluationConfig`)."""
    stop = config.start + config.num_images
    if stop > dataset_size:
        raise ValueError(f"start + num_images = {config.start} + {config.num_images} = {stop} exceeds the "
                         f"{dataset_size} test images")
    per_shard = math.ceil(math.ceil(config.num_images / config.num_shards) / config.batch_size) * config.batch_size
    lo = config.start + config.shard_index * per_shard
    return np.arange(min(lo, stop), min(lo + per_shard, stop), dtype=np.int64)


def ensure_writable(output_dir) -> Path:
    """Creates ``output_dir`` and proves it writable (a synced probe file), before any work."""
    path = Path(output_dir)
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / f".write_probe{os.getpid()}"
        write_atomic(probe, b"ok")
        probe.unlink()
    except OSError as e:
        raise PermissionError(f"output_dir {path} is not writable: {e.strerror or e}") from e
    return path


@contextlib.contextmanager
def exclusive(output_dir):
    """Holds an exclusive lock on ``output_dir`` (two processes never write one directory)."""
    import fcntl

    with open(Path(output_dir) / ".lock", "a") as f:
        try:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            raise RuntimeError(f"another evaluation is writing to {output_dir}; give each process its own "
                               "output_dir (shards) and merge them") from None
        try:
            yield
        finally:
            fcntl.flock(f.fileno(), fcntl.LOCK_UN)


def _differences(stored, new, prefix="") -> list:
    """Dotted keys whose values differ (``stored`` vs ``new``); keys missing on one side count."""
    if isinstance(stored, dict) and isinstance(new, dict):
        out = []
        for key in sorted(set(stored) | set(new), key=str):
            where = f"{prefix}.{key}" if prefix else str(key)
            if key not in stored or key not in new:
                out.append(f"{where} ({'absent' if key not in stored else stored[key]!r} stored, "
                           f"{'absent' if key not in new else new[key]!r} now)")
            else:
                out.extend(_differences(stored[key], new[key], where))
        return out
    return [] if stored == new else [f"{prefix} ({stored!r} stored, {new!r} now)"]


def _without_range(section: str, entry):
    if section != "models" or not isinstance(entry, dict):
        return entry
    return {k: v for k, v in entry.items() if k not in RANGE_KEYS}


def _covering_range(old: dict, new: dict) -> dict:
    """``new`` with start / num_images widened to cover ``old``'s range too."""
    if not all(k in old and k in new for k in RANGE_KEYS):
        return new
    start = min(old["start"], new["start"])
    stop = max(old["start"] + old["num_images"], new["start"] + new["num_images"])
    return {**new, "start": start, "num_images": stop - start}


def conflicts(stored: dict, new: dict) -> list:
    """What makes ``new`` settings incompatible with ``stored`` ones (module doc)."""
    out = []
    for key in sorted(set(stored) | set(new)):
        if key in INFORMATIONAL_SECTIONS:
            continue
        if key in GROWING_SECTIONS:
            a, b = stored.get(key, {}), new.get(key, {})
            for name in sorted(set(a) & set(b)):
                out.extend(_differences(_without_range(key, a[name]), _without_range(key, b[name]), f"{key}.{name}"))
        else:
            out.extend(_differences({key: stored.get(key, "absent")}, {key: new.get(key, "absent")}))
    return out


def combine(stored: dict, new: dict) -> dict:
    """``stored`` grown by ``new`` (call after `conflicts` came back empty)."""
    out = dict(stored)
    for key, value in new.items():
        if key == "models":
            old = stored.get(key, {})
            out[key] = {**old, **{m: _covering_range(old[m], v) if m in old else v for m, v in value.items()}}
        elif key in GROWING_SECTIONS:
            out[key] = {**stored.get(key, {}), **value}
        elif key == "plans":
            merged = {**stored.get(key, {})}
            for name, plan in value.items():
                old = merged.get(name, {"attacks": []})
                merged[name] = {"attacks": old["attacks"] + [a for a in plan["attacks"] if a not in old["attacks"]],
                                "skipped": {k: v for k, v in plan["skipped"].items()
                                            if k not in old["attacks"] and k not in plan["attacks"]}}
            out[key] = merged
        else:
            out[key] = value
    return out


def read_settings(output_dir) -> dict:
    path = Path(output_dir) / SETTINGS_FILE
    if not path.exists():
        return {}
    try:
        return json.loads(path.read_text())
    except ValueError as e:
        raise ValueError(f"{path} is corrupt ({e}); it records what this directory's results were made with") from e


def write_settings(output_dir, settings: dict) -> None:
    write_atomic(Path(output_dir) / SETTINGS_FILE, json.dumps(settings, indent=2, sort_keys=True).encode())


def adopt(output_dir, new: dict) -> dict:
    """Checks ``new`` against the directory's stored settings (refusing differences, naming
    them), stores the combination and returns it."""
    new = json.loads(json.dumps(new))  # compare what JSON stores (tuples become lists)
    stored = read_settings(output_dir)
    problems = conflicts(stored, new) if stored else []
    if problems:
        raise ValueError(f"{Path(output_dir)} holds results made with other settings; use another output_dir "
                         f"or the same settings. Differing: " + "; ".join(problems))
    combined = combine(stored, new) if stored else new
    write_settings(output_dir, combined)
    return combined


def expected_attacks(settings: dict) -> dict:
    """{model: {norm: [attack, ...]}} from settings' plans and attacks (the protocol's input)."""
    out = {}
    for model, plan in settings.get("plans", {}).items():
        per_norm = {}
        for name in plan["attacks"]:
            for norm in settings["attacks"][name]["counts_for"]:
                per_norm.setdefault(norm, []).append(name)
        out[model] = per_norm
    return out
