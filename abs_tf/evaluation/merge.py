"""Merging evaluation directories (the shards of one run, or runs of different models).

    summary = merge(["out/shard0", "out/shard1"], "out/all")

The sources must agree on their shared settings (`settings.conflicts`; the shard index may
differ); their records, clean records, adversarial shards, distal adversarials (made by shard 0
only: `abs_tf.evaluation.distal`), checks (`repeats.combine_checks`: a flag of any source is
kept) and run logs are combined into a new directory with ``shard_index`` 0 of 1, and its
summary is written. A key recorded in two sources must be recorded alike (the seconds aside),
and a model's distal adversarials too. ``merged.json`` lists the sources and,
per sharding, which shards were present (a missing one is reported, not hidden).

``models`` takes only some models of a source, e.g. to replace one row after its attacks
changed: ``merge(["results/table1", "results/binary_cnn_new"], "results/table1_new",
models={"results/table1": ["cnn", "madry", "abs"]})``; sources not named there give all theirs.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from abs_tf.evaluation import settings as settings_lib
from abs_tf.evaluation.records import (CLEAN_FILE, RECORDS_FILE, JsonlLog, append_clean, append_records, read_clean,
                                       read_records, write_atomic)
from abs_tf.evaluation.distal import copy_into as copy_distal
from abs_tf.evaluation.repeats import combine_checks
from abs_tf.evaluation.runner import CHECKS_FILE, RUNS_FILE, read_checks, write_summary

MERGED_FILE = "merged.json"


def _union(sources_items, what):
    """Items of all sources by key; the same key must carry the same content (seconds aside)."""
    out = {}
    for source, items in sources_items:
        for item in items:
            previous = out.get(item.key)
            if previous is not None:
                a, b = previous.to_json(), item.to_json()
                a.pop("seconds"), b.pop("seconds")
                if a != b:
                    raise ValueError(f"merge: {what} {item.key} differs between sources (one of them {source})")
                continue
            out[item.key] = item
    return [out[k] for k in sorted(out)]


def _copy_shard(source: Path, root: Path, relative: str, copied: set) -> None:
    if relative in copied:
        return
    src, dst = source / relative, root / relative
    if not src.is_file():
        raise FileNotFoundError(f"merge: {src} is referenced by a record but missing")
    if dst.exists():
        if dst.read_bytes() != src.read_bytes():
            raise ValueError(f"merge: {relative} differs between sources")
    else:
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src, dst)
    copied.add(relative)


def _selected(settings: dict, keep) -> dict:
    """``settings`` with its per-model sections cut to the models in ``keep`` (None: all)."""
    if keep is None:
        return settings
    return {**settings, **{section: {m: v for m, v in settings[section].items() if m in keep}
                           for section in ("models", "plans") if section in settings}}


def merge(sources, output_dir, *, models=None) -> dict:
    """Combines evaluation directories ``sources`` into ``output_dir`` (module doc); returns
    the merged summary. Refuses an ``output_dir`` that already holds records.

    models: optional {source: model names}: only those models of that source are merged."""
    sources = [Path(s) for s in sources]
    if not sources:
        raise ValueError("merge: give at least one source directory")
    keep = {}
    for source, names in (models or {}).items():
        if Path(source) not in sources:
            raise ValueError(f"merge: models are chosen for {source}, which is not a source")
        keep[Path(source)] = frozenset(names)
    stored = []
    for s in sources:
        current = settings_lib.read_settings(s)
        if not current:
            raise ValueError(f"merge: {s} has no {settings_lib.SETTINGS_FILE} (not an evaluation directory)")
        unknown = sorted(keep.get(s, frozenset()) - set(current.get("models", {})))
        if unknown:
            raise ValueError(f"merge: {s} holds no model {', '.join(unknown)}")
        stored.append(_selected(current, keep.get(s)))
    root = settings_lib.ensure_writable(output_dir)
    if (root / RECORDS_FILE).exists() or (root / CLEAN_FILE).exists():
        raise ValueError(f"merge: {root} already holds records; merge into a new directory")
    merged = None
    for source, current in zip(sources, stored):
        current = {**current, "shard_index": 0}
        if merged is not None:
            problems = settings_lib.conflicts(merged, current)
            if problems:
                raise ValueError(f"merge: {source} was made with other settings: " + "; ".join(problems))
        merged = current if merged is None else settings_lib.combine(merged, current)
    shards = sorted({s["shard_index"] for s in stored})
    merged["num_shards"] = 1

    def taken(source, items):
        return [i for i in items if source not in keep or i.model in keep[source]]

    with settings_lib.exclusive(root):
        by_source = [(s, taken(s, read_records(s))) for s in sources]
        records = _union(by_source, "record")
        clean = _union([(s, taken(s, read_clean(s))) for s in sources], "clean record")
        copied = set()
        origin = {}
        for s, items in by_source:
            for r in items:
                if r.adversarial_file and r.adversarial_file not in origin:
                    origin[r.adversarial_file] = s
        for relative, s in origin.items():
            _copy_shard(s, root, relative, copied)
        settings_lib.write_settings(root, merged)
        append_records(root, records)
        append_clean(root, clean)
        checks, runs = {}, []
        for s in sources:
            for model, values in read_checks(s).items():
                if s not in keep or model in keep[s]:
                    checks[model] = combine_checks(checks.get(model, {}), values)
            runs.extend(run for run in JsonlLog(s / RUNS_FILE).read()
                        if s not in keep or set(run.get("models", [])) & keep[s])
            copy_distal(s, root, models=keep.get(s))
        write_atomic(root / CHECKS_FILE, json.dumps(checks, indent=2, sort_keys=True).encode())
        JsonlLog(root / RUNS_FILE).append(runs)
        num_shards = stored[0]["num_shards"]
        write_atomic(root / MERGED_FILE, json.dumps({
            "sources": [str(s) for s in sources], "num_shards": num_shards, "shards_present": shards,
            "shards_missing": [k for k in range(num_shards) if k not in shards]}, indent=2).encode())
        return write_summary(root)
