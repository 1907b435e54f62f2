"""Runs a preset's attacks on models and images, resumable, sharded, verified.

    summary = run_evaluation(EvaluationConfig(preset="quick", num_images=5), {"cnn": cnn},
                             test_images, test_labels, "out/quick")

Order of work, per model: the clean pass (clean predictions; ABS's certified-L2 estimates),
then per attack of the model's plan, batches of ``batch_size`` images (fixed chunks of the
shard's image list, so a resumed or sharded run makes the same model calls as an
uninterrupted one). Per batch: `abs_tf.attacks.minimize` (every candidate verified by the
attack library), then one more verification of the kept adversarials on the model itself in
one call (the layout `recheck` repeats), the adversarials' shard, then the batch's records
(``records``: flush + fsync). A kill loses at most the batch in flight; the same call resumes
and skips every (model, attack, image) already recorded. A model's records from earlier runs
are re-verified (`recheck`) before it is attacked further: tampered records stop the run.
After its attacks, per model: its distal adversarials (`distal`, once per directory, in shard 0;
budget `presets.DISTAL`, kept in settings.json's "attacks" as ``distal_adversarials``), then the
checks that repeat attacks on its first ``determinism_images`` images (`repeats`: determinism;
more steps never weaken a result).

Outputs (see `records`): ``settings.json``, ``records.jsonl``, ``clean.jsonl``,
``adversarials/``, ``distal/``, ``checks.json`` (per model: determinism, more steps, rechecks),
``runs.jsonl`` (commands, wall time) and ``summary.json`` (`protocol.summarize` and the distal
rows: deterministic, no timings).
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from pathlib import Path
from typing import Callable, Optional

import numpy as np

from abs_tf import attacks
from abs_tf.attacks.verify import verify
from abs_tf.evaluation import distal, presets, protocol, repeats, settings as settings_lib
from abs_tf.evaluation.recheck import recheck
from abs_tf.evaluation.records import (CleanRecord, JsonlLog, Record, append_clean, append_records, check_name,
                                       image_sha256, read_clean, read_records, write_atomic, write_shard)
from abs_tf.evaluation.settings import EvaluationConfig, select_indices

SUMMARY_FILE = "summary.json"
CHECKS_FILE = "checks.json"
RUNS_FILE = "runs.jsonl"
DISTAL_SETTING = "distal_adversarials"  # its key in settings.json's "attacks"


@dataclasses.dataclass(frozen=True)
class Progress:
    """One progress report: ``done`` of ``total`` images of (model, attack) ("clean": the
    clean pass); queries_per_image: mean over the images done so far in this run (nan in the
    report that an attack starts, sent before its first batch)."""

    model: str
    attack: str
    done: int
    total: int
    queries_per_image: float
    seconds: float


class ProgbarProgress:
    """A ``progress`` callback drawing one `keras.utils.Progbar` per (model, attack); the
    driver creates it (the library itself prints nothing). ``announce(text)``: optional, called
    with "model / attack" when a new bar starts (e.g. absl's logging.info)."""

    def __init__(self, announce: Optional[Callable[[str], None]] = None):
        self.announce = announce
        self.key, self.bar = None, None

    def __call__(self, p: Progress) -> None:
        import keras

        if (p.model, p.attack) != self.key:
            self.key = (p.model, p.attack)
            if self.announce:
                self.announce(f"{p.model} / {p.attack}: {p.total} images")
            self.bar = keras.utils.Progbar(p.total, unit_name="image", stateful_metrics=["queries/image"])
        values = [] if math.isnan(p.queries_per_image) else [("queries/image", p.queries_per_image)]
        self.bar.update(p.done, values=values, finalize=p.done >= p.total)


def _chunks(indices: np.ndarray, size: int):
    return [indices[i:i + size] for i in range(0, len(indices), size)]


def _logits(model, x):
    return np.asarray(model(x), np.float32)


def _clean_pass(name, model, traits, images, labels, indices, config, root, done, progress):
    """Clean predictions (and certified-L2 estimates) of ``indices`` not yet in ``done``."""
    todo = np.array([i for i in indices if (name, int(i)) not in done], np.int64)
    finished = len(indices) - len(todo)
    for chunk in _chunks(indices, config.batch_size):
        idx = chunk[np.isin(chunk, todo)]
        if idx.size == 0:
            continue
        t0 = time.perf_counter()
        bounds = None
        if traits.certified_bounds:
            from abs_tf.models.abs.certify import logits_and_bounds
            logits, bounds = logits_and_bounds(model, images[idx], labels[idx])
        else:
            logits = _logits(model, images[idx])
        seconds = (time.perf_counter() - t0) / idx.size
        predictions = np.argmax(logits, axis=1)
        bounds = [None] * idx.size if bounds is None else [float(b) for b in bounds]
        append_clean(root, [CleanRecord(name, int(i), int(labels[i]), int(p), b, seconds)
                            for i, p, b in zip(idx, predictions, bounds)])
        finished += idx.size
        if progress:
            progress(Progress(name, "clean", finished, len(indices), 1.0, seconds))


def _attack_batch(name, entry, attack, target, model, x, y, idx, clean_prediction, config, root):
    """Records of one batch (module doc); the shard is written before they are returned."""
    t0 = time.perf_counter()
    result = attacks.minimize(attack, target, x, y, grid=entry.grid, bisection_steps=entry.bisection_steps,
                              seed=config.seed, max_queries=entry.max_queries)
    clean_error = clean_prediction != y
    stored = clean_error | result.is_adversarial
    candidates = np.where(clean_error[:, None, None, None], x, result.adversarials)
    success = np.zeros(len(idx), bool)
    distances = {n: np.full(len(idx), np.inf) for n in attacks.NORMS}
    prediction = clean_prediction.copy()
    shard = None
    if stored.any():
        v = verify(model, x[stored], y[stored], candidates[stored])
        flipped = clean_error[stored] & ~v.is_adversarial
        if flipped.any():
            raise RuntimeError(f"{name}: the decision on clean image(s) {idx[stored][flipped].tolist()} changed "
                               "between two calls (the model is not deterministic)")
        success[stored] = v.is_adversarial
        prediction[stored] = np.where(v.is_adversarial, v.predictions, prediction[stored])
        for n in attacks.NORMS:
            distances[n][stored] = np.where(v.is_adversarial, v.distances[n], np.inf)
        shard = write_shard(root, name, entry.name, idx[stored], y[stored], v.adversarials)
        candidates[stored] = v.adversarials
    seconds = (time.perf_counter() - t0) / len(idx)
    records = []
    for k, i in enumerate(idx):
        ok = bool(success[k])
        records.append(Record(
            model=name, attack=entry.name, index=int(i), label=int(y[k]), clean_prediction=int(clean_prediction[k]),
            prediction=int(prediction[k]), success=ok, distances={n: float(distances[n][k]) for n in attacks.NORMS},
            norm=entry.norm, counts_for=tuple(entry.counts_for), no_gradient=bool(result.no_gradient[k] and not ok),
            budget_exhausted=bool(result.budget_exhausted[k] and not ok),
            forward_queries=float(result.forward_queries[k]), gradient_queries=float(result.gradient_queries[k]),
            queries=float(result.queries[k]), seconds=seconds, seed=config.seed, attack_repr=repr(attack),
            adversarial_file=shard if ok else None, adversarial_sha256=image_sha256(candidates[k]) if ok else None))
    return records


def _evaluate_model(name, model, traits, plan, images, labels, indices, config, root, earlier, progress,
                    substitute, previous) -> dict:
    """Clean pass, recheck of the model's earlier records, then every attack of ``plan`` on the
    images not yet recorded, the distal adversarials (`distal`) and the checks that repeat
    attacks (`repeats`; ``previous``: the model's stored checks); returns the model's checks."""
    _clean_pass(name, model, traits, images, labels, indices, config, root, {c.key for c in read_clean(root)},
                progress)
    mine = [r for r in earlier if r.model == name]
    if config.recheck and mine:  # before any attack: a tampered directory is refused at once
        recheck(mine, model, images, root=root, labels=labels)
    clean = {c.index: c.prediction for c in read_clean(root) if c.model == name}
    done = {r.key for r in mine}
    new = []
    for entry in plan.entries:
        attack, target = presets.build(entry, model, substitute=substitute)
        finished = sum((name, entry.name, int(i)) in done for i in indices)
        queries = []
        if progress and finished < len(indices):  # the bar starts with the attack: its times are the attack's
            progress(Progress(name, entry.name, finished, len(indices), math.nan, 0.0))
        for chunk in _chunks(indices, config.batch_size):
            idx = np.array([i for i in chunk if (name, entry.name, int(i)) not in done], np.int64)
            if idx.size == 0:
                continue
            batch = _attack_batch(name, entry, attack, target, model, images[idx], labels[idx], idx,
                                  np.array([clean[int(i)] for i in idx], np.int64), config, root)
            append_records(root, batch)
            new.extend(batch)
            finished += idx.size
            queries.extend(r.queries for r in batch)
            if progress:
                progress(Progress(name, entry.name, finished, len(indices), float(np.mean(queries)),
                                  batch[0].seconds))
    _distal(name, model, config, root, progress)
    every = mine + new
    return {"rechecked_records": len(mine) if config.recheck else 0,
            "determinism": repeats.determinism(name, model, plan, substitute, images, labels, indices, config, every),
            "more_steps": repeats.more_steps(name, model, plan, substitute, images, labels, indices, config, every,
                                             previous=previous.get("more_steps"))}


def _distal(name, model, config, root, progress) -> None:
    """The model's distal adversarials (`distal`), once per directory; shard 0 makes them (they
    do not depend on the images; merge carries them to the other shards' union)."""
    budget = presets.DISTAL.get(config.preset, presets.DistalBudget())
    subset = config.attacks is not None  # a run of chosen attacks (--attacks) makes no distal adversarials
    if subset or config.shard_index != 0 or budget.images <= 0 or distal.done(root, name):
        return
    if progress:
        progress(Progress(name, DISTAL_SETTING, 0, budget.images, 0.0, 0.0))
    row = distal.run_distal(name, model, budget, seed=config.seed, root=root)
    if progress:
        progress(Progress(name, DISTAL_SETTING, row["images"], budget.images, row["queries_per_image"],
                          row["seconds"] / row["images"]))


def _distal_setting(config) -> dict:
    """The distal budget as an entry of settings' growing "attacks" section: a directory made
    before it existed is resumed (the entry is added); a later run must agree on it."""
    budget = presets.DISTAL.get(config.preset)
    return {DISTAL_SETTING: budget.describe()} if budget is not None and budget.images > 0 else {}


def _settings(config, models, traits, plans, model_settings) -> dict:
    entries = {e.name: e for p in plans.values() for e in p.entries}
    return {
        "format": settings_lib.SETTINGS_FORMAT, "preset": config.preset, "seed": config.seed,
        "batch_size": config.batch_size, "num_shards": config.num_shards, "shard_index": config.shard_index,
        "attacks": {**{n: e.describe() for n, e in entries.items()}, **_distal_setting(config)},
        "budgets": presets.budget_rows(presets.get_preset(config.preset)),
        "models": {m: {"settings": dict(model_settings.get(m, {})), "traits": traits[m].describe(),
                       "start": config.start, "num_images": config.num_images} for m in models},
        "plans": {m: {"attacks": [e.name for e in p.entries], "skipped": dict(p.skipped)} for m, p in plans.items()},
    }


def write_summary(root) -> dict:
    """summary.json of everything recorded in ``root`` (`protocol.summarize`)."""
    stored = settings_lib.read_settings(root)
    summary = protocol.summarize(read_records(root), read_clean(root), settings_lib.expected_attacks(stored))
    rows = distal.summary(root)
    if rows:  # deterministic (no timings), so resumed and merged summaries stay byte-identical
        summary["distal"] = rows
    write_atomic(Path(root) / SUMMARY_FILE, json.dumps(summary, indent=2, sort_keys=True).encode())
    return summary


def read_checks(root) -> dict:
    """checks.json of ``root`` ({model: {check: outcome}}; {} before the first run)."""
    path = Path(root) / CHECKS_FILE
    return json.loads(path.read_text()) if path.exists() else {}


def _update_checks(root, updates: dict) -> None:
    path = Path(root) / CHECKS_FILE
    checks = read_checks(root)
    for model, values in updates.items():
        checks.setdefault(model, {}).update(values)
    write_atomic(path, json.dumps(checks, indent=2, sort_keys=True).encode())


def run_evaluation(config: EvaluationConfig, models: dict, images, labels, output_dir, *, progress=None,
                   substitute=None, traits: Optional[dict] = None, model_settings: Optional[dict] = None) -> dict:
    """Evaluates ``models`` with ``config``'s preset; returns the directory's summary.

    Args:
      config: `EvaluationConfig`. models: {name: model images [B,28,28,1] -> logits [B,10]}.
      images: the test set, float32 [T, 28, 28, 1] in [0, 1]; labels: int [T]. The images
        evaluated are ``config.start .. start + num_images - 1`` (this shard's block of them).
      output_dir: created if needed; proven writable before any work.
      progress: optional callable receiving `Progress` after every batch.
      substitute: the substitute model of transfer attacks (None: they are skipped).
      traits: optional {name: `presets.ModelTraits`} (default: `presets.traits_of`).
      model_settings: optional {name: JSON-able dict} (weights, options) kept in settings.json.
    Raises: ValueError (bad config or images, settings differing from the directory's),
      PermissionError (output_dir not writable), `RecordRejected` (stored records that do not
      re-verify).
    """
    if not models:
        raise ValueError("models: give at least one {name: model}")
    for name in models:
        check_name(name, "model")
    images = np.asarray(images)
    labels = np.asarray(labels, np.int64)
    if images.ndim != 4 or images.shape[1:] != (28, 28, 1) or labels.shape != images.shape[:1]:
        raise ValueError(f"images must be [T, 28, 28, 1] with labels [T], got {images.shape} and {labels.shape}")
    images = images.astype(np.float32, copy=False)
    indices = select_indices(config, len(images))
    root = settings_lib.ensure_writable(output_dir)
    preset = presets.get_preset(config.preset)
    traits = {m: (traits or {}).get(m) or presets.traits_of(model) for m, model in models.items()}
    plans = {m: presets.plan(preset, traits[m], substitute_available=substitute is not None, only=config.attacks)
             for m in models}
    started = time.time()
    status = "interrupted"
    with settings_lib.exclusive(root):
        stored = settings_lib.adopt(root, _settings(config, models, traits, plans, model_settings or {}))
        try:
            earlier = read_records(root)
            previous = read_checks(root)
            for name, model in models.items():  # checks stored per model: a later kill keeps them
                _update_checks(root, {name: _evaluate_model(name, model, traits[name], plans[name], images, labels,
                                                            indices, config, root, earlier, progress, substitute,
                                                            previous.get(name, {}))})
            summary = write_summary(root)
            status = "finished"
            return summary
        finally:
            JsonlLog(root / RUNS_FILE).append([{
                "command": config.command, "models": sorted(models), "preset": stored["preset"],
                "start": config.start, "num_images": config.num_images, "shard_index": config.shard_index,
                "num_shards": config.num_shards, "started": time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(started)),
                "wall_seconds": round(time.time() - started, 3), "status": status}])
