"""The paper's protocol on stored records (SPEC §4-5), pure numpy: no model is called here.

Per model and norm (L0, L2, L∞), each image's number is the smallest distance over all
attacks whose records count in that norm (`Record.counts_for`):

* a verified adversarial counts at its measured distance; clean errors at 0;
* an image without verified adversarial counts +inf (robust) only if some attack of the set
  actually ran on it: where every attack that tried never had a usable gradient ("attack
  failed (no gradient)", `abs_tf.attacks.results`) nothing shows it robust, so it counts 0
  and is flagged ``failed`` (a zero gradient is never read as robustness). The same rule gives
  the per-attack numbers (a set of one attack);
* the attack that gave the minimum "won" the image (ties: the first in preset order; clean
  errors: "clean"; no adversarial at all: nobody).

From the per-image numbers: the median (inf counts as larger than everything) and accuracy at
ε (`THRESHOLDS`: L2 1.5, L∞ 0.3, L0 12), where "adversarial within ε" is the one threshold rule
of the verifier, `abs_tf.attacks.verify.within` (distance <= ε, with float32 slack), and the
accuracy-vs-ε curve on `CURVE_EPSILONS`. An image enters a (model, norm) only when every
expected attack of that norm has a record for it (the others are counted as incomplete).
"""

from __future__ import annotations

import dataclasses
import math
from collections import defaultdict
from typing import Optional

import numpy as np

from abs_tf.attacks.verify import within

PROTOCOL_NORMS = ("l0", "l2", "linf")
THRESHOLDS = {"l0": 12.0, "l2": 1.5, "linf": 0.3}
CURVE_EPSILONS = {
    "l0": tuple(float(e) for e in range(0, 41)),
    "l2": tuple(round(0.05 * i, 2) for i in range(0, 81)),
    "linf": tuple(round(0.01 * i, 2) for i in range(0, 61)),
}
CLEAN = "clean"


def effective_distance(record, norm: str) -> float:
    """A record's number in ``norm`` on its own (module doc): distance, inf, or 0 for a failed
    attack."""
    if record.success:
        return float(record.distances[norm])
    return 0.0 if record.no_gradient else math.inf


def median(distances) -> float:
    """Median of per-image distances (inf allowed); nan for no images."""
    d = np.asarray(distances, np.float64)
    return float(np.median(d)) if d.size else math.nan


def accuracy(distances, epsilon: float, norm: str) -> float:
    """Fraction of images with no adversarial within ``epsilon``; nan for no images."""
    d = np.asarray(distances, np.float64)
    return float(np.mean(~within(d, epsilon, norm))) if d.size else math.nan


def curve(distances, epsilons, norm: str) -> np.ndarray:
    """Accuracy at each of ``epsilons`` (float64 [E])."""
    return np.array([accuracy(distances, e, norm) for e in epsilons])


@dataclasses.dataclass(frozen=True)
class NormResult:
    """Per-image minimum over the attacks of one (model, norm).

    indices: int64 [N] complete images (sorted). distances: float64 [N] the minimum.
    winners: list [N] of attack names, "clean", or None (no adversarial). failed: bool [N], no
    attack ran on the image (all failed for lack of gradient): counted 0. attacks: the attack names (preset order).
    per_attack: {attack: float64 [N]} effective distances. incomplete: int64 [M] images
    lacking a record of some attack.
    """

    model: str
    norm: str
    indices: np.ndarray
    distances: np.ndarray
    winners: list
    failed: np.ndarray
    attacks: tuple
    per_attack: dict
    incomplete: np.ndarray


def expected_attacks(records) -> dict:
    """{model: {norm: [attack, ...]}} as seen in ``records`` (first-seen order)."""
    out = defaultdict(lambda: defaultdict(list))
    for r in records:
        for n in r.counts_for:
            if r.attack not in out[r.model][n]:
                out[r.model][n].append(r.attack)
    return {m: dict(v) for m, v in out.items()}


def per_image_minimum(records, model: str, norm: str, attacks=None) -> NormResult:
    """The minimum over ``attacks`` (default: those of ``records`` counting in ``norm``)."""
    mine = [r for r in records if r.model == model and norm in r.counts_for]
    if attacks is None:
        attacks = expected_attacks(mine).get(model, {}).get(norm, [])
    attacks = tuple(attacks)
    table = defaultdict(dict)  # index -> attack -> record
    for r in mine:
        if r.attack in attacks:
            table[r.index][r.attack] = r
    complete = sorted(i for i, row in table.items() if len(row) == len(attacks)) if attacks else []
    incomplete = sorted(i for i in table if i not in set(complete))
    per_attack = {a: np.array([effective_distance(table[i][a], norm) for i in complete], np.float64)
                  for a in attacks}
    distances = np.full(len(complete), math.inf)
    winners, failed = [None] * len(complete), np.zeros(len(complete), bool)
    for k, i in enumerate(complete):
        row = table[i]
        if any(r.clean_error for r in row.values()):
            distances[k], winners[k] = 0.0, CLEAN
            continue
        for a in attacks:  # strict < keeps the first attack in preset order on ties
            if row[a].success and row[a].distances[norm] < distances[k]:
                distances[k], winners[k] = float(row[a].distances[norm]), a
        if math.isinf(distances[k]) and all(r.no_gradient for r in row.values()):
            distances[k], failed[k] = 0.0, True
    return NormResult(model, norm, np.array(complete, np.int64), distances, winners, failed, attacks, per_attack,
                      np.array(incomplete, np.int64))


def json_number(x) -> Optional[float]:
    """float for JSON: None for inf/nan (the report prints them)."""
    x = float(x)
    return x if math.isfinite(x) else None


def _attack_stats(result: NormResult, records_by_key, norm: str) -> dict:
    eps = THRESHOLDS[norm]
    stats = {}
    for a in result.attacks:
        d = result.per_attack[a]
        rows = [records_by_key[(result.model, a, int(i))] for i in result.indices]
        stats[a] = {
            "median": json_number(median(d)),
            "accuracy": json_number(accuracy(d, eps, norm)),
            "success_rate": json_number(np.mean([r.success for r in rows]) if rows else math.nan),
            "no_gradient": int(sum(r.no_gradient for r in rows)),
            "budget_exhausted": int(sum(r.budget_exhausted for r in rows)),
            "wins": int(sum(w == a for w in result.winners)),
            "queries_per_image": json_number(np.mean([r.queries for r in rows]) if rows else math.nan),
        }
    return stats


def norm_summary(result: NormResult, records_by_key) -> dict:
    """JSON-able numbers of one (model, norm)."""
    norm, d = result.norm, result.distances
    stats = _attack_stats(result, records_by_key, norm)
    return {
        "images": int(d.size),
        "incomplete": int(result.incomplete.size),
        "epsilon": THRESHOLDS[norm],
        "median": json_number(median(d)),
        "accuracy": json_number(accuracy(d, THRESHOLDS[norm], norm)),
        "curve": [json_number(a) for a in curve(d, CURVE_EPSILONS[norm], norm)],
        "clean_errors": int(sum(w == CLEAN for w in result.winners)),
        "unbroken": int(np.sum(np.isinf(d))),
        "failed": [int(i) for i in result.indices[result.failed]],
        "attacks": stats,
        "never_won": [a for a in result.attacks if stats[a]["wins"] == 0],
    }


def summarize(records, clean_records=(), expected=None) -> dict:
    """The protocol's numbers for every model of ``records`` (deterministic: no timings).

    Args:
      records: `Record`s. clean_records: `CleanRecord`s (clean accuracy, certified bounds).
      expected: {model: {norm: [attack, ...]}} (preset order); default `expected_attacks`.
    Returns: {"protocol": ..., "models": {model: {...}}, "never_won": [...]} (JSON-able).
    """
    records = list(records)
    expected = expected_attacks(records) if expected is None else expected
    by_key = {r.key: r for r in records}
    models = sorted({r.model for r in records} | set(expected) | {c.model for c in clean_records})
    out = {"protocol": {"norms": list(PROTOCOL_NORMS), "thresholds": dict(THRESHOLDS),
                        "curve_epsilons": {n: list(e) for n, e in CURVE_EPSILONS.items()},
                        "rule": "per image the smallest verified distance over all attacks of the norm; "
                                "clean errors 0; no adversarial inf; adversarial within eps iff "
                                "distance <= eps (abs_tf.attacks.verify.within)"},
           "models": {}}
    wins = defaultdict(int)
    counted = set()
    for m in models:
        clean = [c for c in clean_records if c.model == m]
        entry = {"clean": {"images": len(clean),
                           "accuracy": json_number(np.mean([c.prediction == c.label for c in clean])
                                                   if clean else math.nan)},
                 "norms": {}}
        for n in PROTOCOL_NORMS:
            attacks = expected.get(m, {}).get(n)
            if not attacks:
                continue
            summary = norm_summary(per_image_minimum(records, m, n, attacks), by_key)
            entry["norms"][n] = summary
            for a, s in summary["attacks"].items():
                counted.add(a)
                wins[a] += s["wins"]
        mine = [r for r in records if r.model == m]
        per_image = defaultdict(float)
        for r in mine:
            per_image[r.index] += r.queries
        entry["queries_per_image"] = json_number(np.mean(list(per_image.values())) if per_image else math.nan)
        out["models"][m] = entry
    out["never_won"] = sorted(a for a in counted if wins[a] == 0)
    return out
