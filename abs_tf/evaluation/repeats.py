"""Checks that re-run attacks on a model's first images and compare with its stored records
(in the spirit of Carlini et al. 2019 and AutoAttack; the report flags, never hides, them):

* `determinism`: the logits twice, and the model's first attack again, with the same settings:
  the same distances (relative difference <= `DETERMINISM_TOLERANCE`);
* `more_steps`: the preset's iterative gradient attacks (`presets.MORE_STEPS`) again with
  `presets.MORE_STEPS_FACTOR` times their steps (and query budget): more steps must never weaken
  a result. Per image with a stored adversarial at distance d > 0, the attack runs first at
  epsilon d (1 + `MORE_STEPS_TOLERANCE`), then, only where it fails there, up the rest of its
  own grid (no bisection: the question is whether more steps find an adversarial as small as
  the stored one, not how small). "Weakened": nothing within d (1 + tolerance), i.e. a larger
  distance or none at all. One attack run per image where the check holds, instead of the
  whole grid search: on ABS (~1/30 s a query) that is the difference between minutes and an
  hour per model.

Both use the first ``determinism_images`` images of the shard (ABS is slow: a few images, the
attacks' own budgets). Their outcomes are JSON-able dicts kept in checks.json per model; the
more-steps outcome is reused by a resumed run when the same attacks and images were checked.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from abs_tf import attacks
from abs_tf.evaluation import presets, protocol

DETERMINISM_TOLERANCE = 1e-4
MORE_STEPS_TOLERANCE = 0.05


def _logits(model, x):
    return np.asarray(model(x), np.float32)


def _minimize(entry, model, x, y, substitute, seed, *, grid=None, bisection_steps=None):
    attack, target = presets.build(entry, model, substitute=substitute)
    return attacks.minimize(attack, target, x, y, grid=entry.grid if grid is None else grid,
                            bisection_steps=entry.bisection_steps if bisection_steps is None else bisection_steps,
                            seed=seed, max_queries=entry.max_queries)


def _stored(records, model: str, attack: str) -> dict:
    return {r.index: r for r in records if r.model == model and r.attack == attack}


def determinism(name, model, plan, substitute, images, labels, indices, config, records) -> dict:
    """Repeats the model's first attack on the first images, and its logits (module doc)."""
    k = min(config.determinism_images, len(indices))
    if k == 0 or not plan.entries:
        return {"checked": False}
    idx = indices[:k]
    x, y = images[idx], labels[idx]
    same_logits = bool(np.array_equal(_logits(model, x), _logits(model, x)))
    entry = plan.entries[0]
    again = _minimize(entry, model, x, y, substitute, config.seed)
    stored = _stored(records, name, entry.name)
    worst = 0.0
    for j, i in enumerate(idx):
        if int(i) not in stored:
            continue
        a, b = float(stored[int(i)].distances[entry.norm]), float(again.distances[entry.norm][j])
        if np.isinf(a) != np.isinf(b):
            worst = np.inf
        elif np.isfinite(a):
            worst = max(worst, abs(a - b) / max(abs(a), 1e-12) if a else abs(b))
    return {"checked": True, "attack": entry.name, "images": [int(i) for i in idx], "logits_repeat_equal": same_logits,
            "max_relative_distance_difference": protocol.json_number(worst),
            "deterministic": same_logits and worst <= DETERMINISM_TOLERANCE}


def weakened(stored: float, more: float, tolerance: float = MORE_STEPS_TOLERANCE) -> bool:
    """Whether ``more`` (the distance with more steps; inf: none found) is weaker than
    ``stored`` (inf: none stored): larger by more than ``tolerance`` relative (and float32
    round-off), or lost."""
    if np.isinf(stored):
        return False
    return bool(np.isinf(more) or more > stored * (1 + tolerance + 1e-5))


def focused_grid(entry, stored: float, tolerance: float = MORE_STEPS_TOLERANCE) -> tuple:
    """Epsilons of the more-steps run of one image (module doc): the stored distance plus the
    tolerance, then the points of the entry's grid above it."""
    top = float(stored) * (1 + tolerance)
    grid = entry.grid if entry.grid is not None else attacks.DEFAULT_GRIDS[entry.norm]
    return (top,) + tuple(float(g) for g in grid if g > top)


def more_steps_entry(entry, factor: int):
    """``entry`` with ``factor`` times its steps (and query budget)."""
    return dataclasses.replace(entry, params={**entry.params, "steps": int(entry.params["steps"]) * factor},
                               max_queries=None if entry.max_queries is None else entry.max_queries * factor)


def more_steps(name, model, plan, substitute, images, labels, indices, config, records, *, previous=None) -> dict:
    """The more-steps check of ``name`` (module doc); ``previous``: its stored outcome, reused
    when it checked the same attacks on the same images with the same factor."""
    chosen = [e for e in plan.entries if e.name in presets.MORE_STEPS.get(config.preset, ())
              and "steps" in e.params]
    k = min(config.determinism_images, len(indices))
    if k == 0 or not chosen:
        return {"checked": False, "reason": "no images (determinism_images 0)" if k == 0 else
                "none of the preset's more-steps attacks runs on this model"}
    idx = indices[:k]
    factor = presets.MORE_STEPS_FACTOR
    what = {"attacks": [e.name for e in chosen], "images": [int(i) for i in idx], "factor": factor,
            "tolerance": MORE_STEPS_TOLERANCE}
    if previous and previous.get("checked") and all(previous.get(key) == value for key, value in what.items()):
        return previous
    per_attack, flags = {}, []
    for entry in chosen:
        more = more_steps_entry(entry, factor)
        stored = _stored(records, name, entry.name)
        rows = []
        for i in idx:
            record = stored.get(int(i))
            if record is None or not record.success or record.clean_error:
                continue  # nothing stored that more steps could weaken
            a = float(record.distances[entry.norm])
            grid = focused_grid(entry, a)
            again = _minimize(more, model, images[[i]], labels[[i]], substitute, config.seed, grid=grid,
                              bisection_steps=0)
            b = float(again.distances[entry.norm][0])
            rows.append({"image": int(i), "stored": a, "epsilon": grid[0], "more_steps": protocol.json_number(b),
                         "weakened": weakened(a, b)})
            if rows[-1]["weakened"]:
                flags.append(f"{entry.name} on image {int(i)}: {a:.4g} stored, "
                             f"{'none found' if np.isinf(b) else f'{b:.4g}'} with {factor}x the steps")
        per_attack[entry.name] = {"steps": more.params["steps"], "norm": entry.norm, "images": rows}
    return {"checked": True, **what, "per_attack": per_attack, "weakened": flags, "held": not flags}


def _combine_more_steps(a: dict, b: dict) -> dict:
    if not (a.get("checked") and b.get("checked")):
        return a if a.get("checked") else b
    per_attack = {k: dict(v) for k, v in a["per_attack"].items()}
    for name, entry in b["per_attack"].items():
        if name in per_attack:
            seen = {row["image"] for row in per_attack[name]["images"]}
            per_attack[name]["images"] = per_attack[name]["images"] + [r for r in entry["images"]
                                                                       if r["image"] not in seen]
        else:
            per_attack[name] = entry
    flags = a["weakened"] + [f for f in b["weakened"] if f not in a["weakened"]]
    return {**a, "attacks": a["attacks"] + [n for n in b["attacks"] if n not in a["attacks"]],
            "images": sorted(set(a["images"]) | set(b["images"])), "per_attack": per_attack, "weakened": flags,
            "held": not flags}


def combine_checks(a: dict, b: dict) -> dict:
    """One model's checks of two directories (merge): the more-steps outcomes are united
    (images, attacks, flags); of two determinism outcomes a failed one is kept."""
    out = {**a, **b}
    if "more_steps" in a and "more_steps" in b:
        out["more_steps"] = _combine_more_steps(a["more_steps"], b["more_steps"])
    if a.get("determinism", {}).get("checked") and not a["determinism"].get("deterministic"):
        out["determinism"] = a["determinism"]
    elif not b.get("determinism", {}).get("checked") and "determinism" in a:
        out["determinism"] = a["determinism"]
    return out
