"""report.md of an evaluation directory: the paper's Table 1 reproduced beside the paper's
figures, with the costs, the budgets, the figures and automatic checks flagged, not hidden.

    write_report("out/table1", test_images)      # after run_evaluation or merge

Checks (in the spirit of Carlini et al. 2019 and AutoAttack): every attack reaches 100 %
success at its largest ε (minimisation: unbounded); outputs are deterministic (the runner's
repeat of each model's first attack); more steps never weaken a result (`repeats`);
decision-based attacks beating gradient attacks by a wide margin (`MASKING_RATIO`) on a model,
a gradient-masking signal; attacks that never win (drop candidates); attacks without gradient;
records re-verified; verified adversarials below ABS's certified-L2 estimate (which would
falsify the estimate); medians more than `TOLERANCE` from the paper's. The distal adversarials
per model (`distal`) are set beside the paper's finding on them (`PAPER_DISTAL`). Rows named in
`compare.PAIRS` (the shipped ABS against stage 7 and the release's weights, stage 7 against the
release) are compared image by image (`compare`).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from abs_tf.evaluation import compare, distal, figures, protocol, settings as settings_lib
from abs_tf.evaluation.records import JsonlLog, read_clean, read_records
from abs_tf.evaluation.runner import CHECKS_FILE, DISTAL_SETTING, RUNS_FILE, write_summary

REPORT_FILE = "report.md"
CURVES_FILE = "accuracy_curves.png"
DISTAL_FILE = "distal_adversarials.png"
NOTES_FILE = "notes.md"  # explanations of where ours and the paper's figures differ (`_read_notes`)
PAPER_SOURCE = ("Schott, Rauber, Bethge & Brendel, 'Towards the first adversarially robust neural network model "
                "on MNIST', ICLR 2019, Table 1; figures read from the authors' published accuracy-vs-distortion "
                "curve data (SPEC §5)")
# Paper row -> norm -> (accuracy at ε, median perturbation).
PAPER_TABLE1 = {
    "CNN": {"l2": (0.08, 1.1), "linf": (0.00, 0.08), "l0": (0.19, 9)},
    "Binary CNN": {"l2": (0.03, 0.9), "linf": (0.63, 0.34), "l0": (0.38, 11)},
    "Nearest neighbour": {"l2": (0.53, 1.5), "linf": (0.22, 0.19), "l0": (0.34, 10)},
    "Madry et al.": {"l2": (0.35, 1.4), "linf": (0.87, 0.34), "l0": (0.00, 4)},
    "Binary ABS": {"l2": (0.39, 1.3), "linf": (0.77, 0.44), "l0": (0.77, 21)},
    "ABS": {"l2": (0.80, 2.2), "linf": (0.08, 0.23), "l0": (0.69, 16)},
}
# Our model names -> the paper's row they reproduce.
PAPER_ROWS = {"cnn": "CNN", "cnn_official": "CNN", "binary_cnn": "Binary CNN", "binary_cnn_official": "Binary CNN",
              "nearest_neighbor": "Nearest neighbour", "madry": "Madry et al.", "binary_abs": "Binary ABS",
              "binary_abs_official": "Binary ABS", "abs": "ABS", "abs_official": "ABS", "abs_stage7": "ABS"}
# Paper row -> whether it reaches high confidence on noise-like images (Schott et al. 2019, Fig. 4).
PAPER_DISTAL = {"CNN": True, "Madry et al.": True, "ABS": False, "Binary ABS": False}
TOLERANCE = 0.25
MASKING_RATIO = 1.5
NORM_NAMES = {"l0": "L0", "l2": "L2", "linf": "L∞"}
BUDGET_COLUMNS = ("attack", "norm", "counts_for", "kind", "models", "params", "search", "gradient", "max_queries")


def _pct(x) -> str:
    return "–" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{100 * x:.0f} %"


def _dist(x, norm) -> str:
    if x is None:
        return "∞"
    if isinstance(x, float) and math.isnan(x):
        return "–"
    return f"{x:.1f}" if norm == "l0" else f"{x:.2f}"


def _table(header, rows) -> list:
    return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)] + \
        ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]


def paper_figures(model: str):
    """{norm: (accuracy, median)} of the paper's row for ``model``, or None."""
    return PAPER_TABLE1.get(PAPER_ROWS.get(model, ""))


def _main_table(summary) -> tuple:
    header = ["model", "images", "clean acc."] + [f"{NORM_NAMES[n]} {what}" for n in ("l2", "linf", "l0")
                                                  for what in (f"acc@{protocol.THRESHOLDS[n]:g}", "median")]
    rows, deviations = [], []
    for m, entry in sorted(summary["models"].items()):
        paper = paper_figures(m)
        images = sorted({entry["norms"][n]["images"] for n in entry["norms"]})
        row = [m, "/".join(str(i) for i in images) or "0", _pct(entry["clean"]["accuracy"])]
        for n in ("l2", "linf", "l0"):
            s = entry["norms"].get(n)
            if s is None:
                row += ["not run", "not run"]
                continue
            acc, med = _pct(s["accuracy"]), _dist(s["median"], n)
            if paper:
                p_acc, p_med = paper[n]
                acc, med = f"{acc} ({_pct(p_acc)})", f"{med} ({_dist(float(p_med), n)})"
                ours = math.inf if s["median"] is None else s["median"]
                if abs(ours - p_med) > TOLERANCE * p_med:
                    deviations.append((f"{m} {NORM_NAMES[n]}",
                                       f"{m} {NORM_NAMES[n]} median {_dist(s['median'], n)} vs the paper's "
                                       f"{_dist(float(p_med), n)} ({'above' if ours > p_med else 'below'} by more "
                                       f"than {TOLERANCE:.0%})"))
            row += [acc, med]
        rows.append(row)
    return _table(header, rows), deviations


def _per_image_cost(records, clean) -> dict:
    """{model: (images, attacks, seconds per image, queries per image)}: per attack its mean over
    the images it ran on, summed over the model's attacks, plus the clean pass, so a row whose
    attacks have so far run on different images is costed for the whole preset. images: (fewest,
    most) images of an attack; attacks: how many attacks have records."""
    out = {}
    for m in sorted({r.model for r in records} | {c.model for c in clean}):
        seconds, queries = {}, {}
        for r in records:
            if r.model == m:
                seconds.setdefault(r.attack, []).append(r.seconds)
                queries.setdefault(r.attack, []).append(r.queries)
        if not seconds:
            out[m] = ((0, 0), 0, math.nan, math.nan)
            continue
        attacked = {r.index for r in records if r.model == m}
        clean_s = [c.seconds for c in clean if c.model == m and c.index in attacked]
        counts = [len(v) for v in seconds.values()]
        out[m] = ((min(counts), max(counts)), len(seconds),
                  float(sum(np.mean(v) for v in seconds.values()) + (np.mean(clean_s) if clean_s else 0.0)),
                  float(sum(np.mean(v) for v in queries.values())))
    return out


def _attack_rows(entry, norm, kinds, records, model) -> list:
    seconds = {}
    for r in records:
        if r.model == model and norm in r.counts_for:
            seconds.setdefault(r.attack, []).append(r.seconds)
    rows = []
    for a, s in entry["attacks"].items():
        rows.append([a, kinds.get(a, "?"), _dist(s["median"], norm), _pct(s["accuracy"]), _pct(s["success_rate"]),
                     s["wins"], s["no_gradient"], f"{s['queries_per_image']:.0f}" if s["queries_per_image"] else "–",
                     f"{np.mean(seconds.get(a, [math.nan])):.2f}"])
    return rows


def _masking(records, settings, expected) -> list:
    """Models and norms where decision-based attacks beat gradient attacks by MASKING_RATIO."""
    kinds = {a: d["kind"] for a, d in settings.get("attacks", {}).items()}
    flags = []
    for m, per_norm in sorted(expected.items()):
        for n, attacks in sorted(per_norm.items()):
            gradient = [a for a in attacks if kinds.get(a) == "gradient"]
            decision = [a for a in attacks if kinds.get(a) == "decision"]
            if not gradient or not decision:
                continue
            g = protocol.median(protocol.per_image_minimum(records, m, n, gradient).distances)
            d = protocol.median(protocol.per_image_minimum(records, m, n, decision).distances)
            if d > 0 and g > MASKING_RATIO * d:
                flags.append(f"{m} {NORM_NAMES[n]}: decision-based median {_dist(d, n)} vs gradient-based "
                             f"{_dist(g if math.isfinite(g) else None, n)} (gradient masking?)")
    return flags


def _certified(records, clean, expected) -> list:
    lines = []
    for m in sorted({c.model for c in clean if c.certified_l2 is not None}):
        bounds = {c.index: c.certified_l2 for c in clean if c.model == m and c.certified_l2 is not None}
        result = protocol.per_image_minimum(records, m, "l2", expected.get(m, {}).get("l2"))
        below = [int(i) for i, d in zip(result.indices, result.distances)
                 if i in bounds and 0 < d < bounds[int(i)] * (1 - 1e-6)]
        lines.append(f"- **{m}**: median certified-L2 estimate {np.median(list(bounds.values())):.3f} over "
                     f"{len(bounds)} images (an estimate of a certificate: the latent search stands in for the "
                     f"minimum over z, SPEC §3). "
                     + (f"**FLAG: verified adversarials below the estimate on images {below}** — the estimate "
                        "is falsified there." if below else "No verified adversarial lies below an image's "
                                                            "estimate."))
    return lines


def _median_cell(distances, norm) -> str:
    return "–" if distances.size == 0 else _dist(protocol.json_number(protocol.median(distances)), norm)


def _paired(records, expected, notes) -> list:
    """The `compare.PAIRS` present in ``expected``: per norm, model a's per-image minima against b's,
    each with the decision ``notes`` holds on it (key ``<a> against <b>``), asked for when flagged."""
    out = []
    for a, b, what, meaning in compare.PAIRS:
        if a not in expected or b not in expected:
            continue
        per_norm = compare.compare(records, a, b, expected)
        out += [f"**{a} against {b}**: {what}. Per norm on the images both rows have complete: "
                f"the medians, accuracy at ε, on how many images {a}'s smallest adversarial is below / above "
                f"{b}'s by more than {_pct(compare.RELATIVE_TIE)} or within it (ties), and an exact sign test "
                f"(\"{compare.LESS}\": {a} below on significantly more images, p < {compare.ALPHA:g}).", ""]
        rows = []
        for n, c in per_norm.items():
            eps = protocol.THRESHOLDS[n]
            rows.append([NORM_NAMES[n], c.images] + [_median_cell(d, n) for d in (c.distances_a, c.distances_b)]
                        + [_pct(protocol.accuracy(d, eps, n)) for d in (c.distances_a, c.distances_b)]
                        + [c.lower, c.higher, c.ties, f"{c.p_value:.3f}", c.verdict])
        out += _table(["norm", "images", f"{a} median", f"{b} median", f"{a} acc@ε", f"{b} acc@ε", f"{a} below",
                       f"{a} above", "ties", "p", f"{a} is"], rows)
        less = [NORM_NAMES[n] for n, c in per_norm.items() if c.verdict == compare.LESS]
        decision = notes.get(f"{a} against {b}")
        if less:
            out += ["", f"**FLAG: {a} is measurably less robust than {b} in {', '.join(less)}: {meaning}.**"]
        elif all(c.verdict == compare.UNMEASURABLE for c in per_norm.values()):
            out += ["", "Too few images with both rows complete to tell (a sign test needs at least 6 untied "
                        "images); resume the run."]
        else:
            out += ["", f"{a} is not measurably less robust than {b} in any norm."]
        if less or decision:
            out += ["", f"Decision: {decision}" if decision else
                    f"Decision: none yet (add `- {a} against {b}: decision` to {NOTES_FILE})"]
        out.append("")
    return out


def _more_steps(model, check) -> list:
    """The "more steps never weaken a result" lines of one model (`repeats.more_steps`)."""
    if not check.get("checked"):
        return [f"- {model}: more steps not checked ({check.get('reason', 'not run yet: a resumed run adds it')})"]
    if not check["held"]:
        return [f"- FLAG {model}: more steps weakened a result: {f}" for f in check["weakened"]]
    compared = sum(len(entry["images"]) for entry in check["per_attack"].values())
    return [f"- {model}: more steps never weakened a result ({', '.join(check['attacks'])} with {check['factor']}x "
            f"their steps on images {check['images']}: {compared} stored adversarial(s) found again within "
            f"{_pct(check['tolerance'])})"]


def _distal_section(root, settings, summary, notes) -> list:
    """The distal adversarials per model (`distal`), beside the paper's finding and ``notes``
    (`_read_notes`) on them."""
    rows = distal.read_rows(root)
    budget = settings.get("attacks", {}).get(DISTAL_SETTING, {}).get("params")
    if not budget:
        return ["- not part of this evaluation's settings (preset without a distal budget)"]
    out = [f"Uniform noise raised towards a target class (0, 1, ..., 9 cycling) for at most {budget['steps']} "
           f"momentum steps until its probability reaches {budget['threshold']:g} (loss `{budget['loss']}`; ABS: "
           "its calibrated probabilities); the paper: the CNN and Madry et al. reach high confidence on noise-like "
           "images, ABS rarely (with the release's cross-entropy loss; `abs_tf.attacks.decision.distal`). "
           "\"agrees\": at least half reach the threshold where the paper finds high confidence, fewer than half "
           "where it finds it rare.", ""]
    table = []
    for m, r in sorted(rows.items()):
        expected = PAPER_DISTAL.get(PAPER_ROWS.get(m, ""))
        verdict = "–" if expected is None else (
            "agrees" if (r["reached_fraction"] >= 0.5) == expected else "**differs**")
        table.append([m, r["images"], r["steps_budget"], _pct(r["reached_fraction"]), f"{r['mean_probability']:.2f}",
                      f"{r['median_probability']:.2f}", f"{r['mean_steps']:.0f}", f"{r['queries_per_image']:.0f}",
                      r["gradient"], f"{r['seconds']:.0f}", verdict])
    out += _table(["model", "images", "steps budget", f"reached {budget['threshold']:g}", "mean p", "median p",
                   "mean steps", "queries / image", "gradient", "s", "paper's finding"], table) if table else []
    missing = sorted(set(summary["models"]) - set(rows))
    if missing:
        out += ["", f"Not made (yet) for: {', '.join(missing)} (shard 0 makes them; a resumed run adds them)."]
    explained = [f"- {m}: {notes[f'{m} distal']}" for m in sorted(rows) if f"{m} distal" in notes]
    if explained:
        out += [""] + explained
    if rows:
        figures.distal_gallery(root, sorted(rows), Path(root) / DISTAL_FILE)
        out += ["", f"![distal adversarials]({DISTAL_FILE})"]
    return out


def _checks(summary, settings, records, checks, expected, root) -> list:
    lines = []
    for m, entry in sorted(summary["models"].items()):
        for n, s in sorted(entry["norms"].items()):
            weak = [a for a, st in s["attacks"].items() if st["success_rate"] is not None and st["success_rate"] < 1]
            if weak:
                lines.append(f"- FLAG {m} {NORM_NAMES[n]}: below 100 % success at the largest ε: " + ", ".join(
                    f"{a} ({_pct(s['attacks'][a]['success_rate'])})" for a in weak))
            blind = {a: st["no_gradient"] for a, st in s["attacks"].items() if st["no_gradient"]}
            if blind:
                lines.append(f"- FLAG {m} {NORM_NAMES[n]}: no usable gradient (attack failed, result void) for "
                             + ", ".join(f"{a} on {k} image(s)" for a, k in blind.items()))
            if s["failed"]:
                lines.append(f"- FLAG {m} {NORM_NAMES[n]}: no attack ran on images {s['failed']} (all lacked a "
                             "gradient): counted as not robust")
            if s["incomplete"]:
                lines.append(f"- {m} {NORM_NAMES[n]}: {s['incomplete']} image(s) still lack some attack "
                             "(not counted; resume the run)")
    for m, c in sorted(checks.items()):
        det = c.get("determinism", {})
        if not det.get("checked"):
            lines.append(f"- {m}: determinism not checked")
        elif not det.get("deterministic"):
            lines.append(f"- FLAG {m}: outputs not deterministic ({det})")
        else:
            lines.append(f"- {m}: deterministic (logits repeated exactly; {det['attack']} repeated on images "
                         f"{det['images']}, same distances); {c.get('rechecked_records', 0)} stored records "
                         "re-verified")
        lines += _more_steps(m, c.get("more_steps", {}))
    lines += [f"- FLAG {f}" for f in _masking(records, settings, expected)] or \
        ["- no decision-based attack beats the gradient attacks by more than "
         f"{MASKING_RATIO}x in median on any model"]
    never = summary.get("never_won", [])
    lines.append(f"- attacks that never won on any model: {', '.join(never)} (candidates to drop from the preset; "
                 "kept)" if never else "- every attack won on some image")
    merged = Path(root) / "merged.json"
    if merged.exists() and json.loads(merged.read_text())["shards_missing"]:
        lines.append(f"- FLAG shards missing from the merge: {json.loads(merged.read_text())['shards_missing']}")
    return lines


def _read_notes(root) -> dict:
    """{"<model> <what>": why} from the directory's `NOTES_FILE` (lines ``- <model> <what>: why``;
    what: a norm as the report prints it, L2, L∞, L0, "distal", or "against <model>" for a paired
    comparison); written by people, committed with the results."""
    path = Path(root) / NOTES_FILE
    notes = {}
    if path.exists():
        for line in path.read_text().splitlines():
            key, sep, why = line[2:].partition(":") if line.startswith("- ") else ("", "", "")
            if sep and key.strip():
                notes[key.strip()] = why.strip()
    return notes


def _explained(deviations, notes) -> list:
    """The deviation lines, each with its explanation from ``notes`` or a request for one."""
    return [f"- {text}: {notes[key]}" if key in notes else
            f"- {text}: not yet explained (add `- {key}: why` to {NOTES_FILE})" for key, text in deviations]


def write_report(output_dir, images=None) -> Path:
    """Writes report.md and the PNG figures of ``output_dir``; ``images``: the test set
    [T, 28, 28, 1] for the galleries (omitted without it). Returns the report's path."""
    root = Path(output_dir)
    settings = settings_lib.read_settings(root)
    if not settings:
        raise FileNotFoundError(f"{root} holds no evaluation ({settings_lib.SETTINGS_FILE} missing)")
    summary = write_summary(root)
    records, clean = read_records(root), read_clean(root)
    checks = json.loads((root / CHECKS_FILE).read_text()) if (root / CHECKS_FILE).exists() else {}
    runs = JsonlLog(root / RUNS_FILE).read()
    expected = settings_lib.expected_attacks(settings)
    kinds = {a: d["kind"] for a, d in settings["attacks"].items()}
    paper = {m: paper_figures(m) for m in summary["models"] if paper_figures(m)}
    figures.accuracy_curves(summary, root / CURVES_FILE, paper)
    table, deviations = _main_table(summary)
    notes = _read_notes(root)
    out = [f"# Robustness evaluation: preset `{settings['preset']}`", "",
           "Per model and norm, each image's number is its smallest verified adversarial over all attacks of "
           "that norm (clean errors 0; images without adversarial ∞); accuracy at ε counts images with no "
           "adversarial within ε. Cells: ours (the paper's). Images per row: per norm where they differ.", ""]
    out += table + ["", f"Paper: {PAPER_SOURCE}. Our Madry et al. row is our own reduced-budget adversarial "
                    "training, not the challenge checkpoint.", ""]
    subsets = {m: sorted(a for a, why in p.get("skipped", {}).items() if why == "not selected")
               for m, p in settings.get("plans", {}).items()}
    out += [f"**{m}: so far only the attacks chosen with --attacks ran; not yet: {', '.join(left)}** (its row is "
            "over the attacks run, not the preset)." for m, left in sorted(subsets.items()) if left] + [""]
    out += ["Where ours and the paper's medians differ by more than 25 %:", ""] + \
        (_explained(deviations, notes) or ["- nowhere"]) + [""]
    out += ["## Figures", "", f"![accuracy vs perturbation]({CURVES_FILE})", ""]
    if images is not None:
        for n in protocol.PROTOCOL_NORMS:
            if any(n in e["norms"] for e in summary["models"].values()):
                figures.gallery(records, images, root, n, root / f"gallery_{n}.png", expected=expected)
                out += [f"![minimal {NORM_NAMES[n]} adversarials](gallery_{n}.png)", ""]
    out += ["## Distal adversarials", ""] + _distal_section(root, settings, summary, notes) + [""]
    out += ["## Automatic checks", ""] + _checks(summary, settings, records, checks, expected, root) + [""]
    paired = _paired(records, expected, notes)
    if paired:
        out += ["## Paired comparisons", ""] + paired
    out += ["## Certified L2 (ABS)", ""] + (_certified(records, clean, expected) or ["- no model offers bounds"])
    out += ["", "## Cost per image", ""]
    cost = _per_image_cost(records, clean)
    out += ["Per attack its mean over the images it ran on, summed over the attacks recorded so far (a row "
            "still running costs more once its remaining attacks run).", ""]
    out += _table(["model", "images per attack", "attacks", "wall s / image", "queries / image",
                   "1000 images would take"],
                  [[m, f"{lo}" if lo == hi else f"{lo}–{hi}", k, f"{s:.2f}", f"{q:.0f}", f"{s * 1000 / 3600:.1f} h"]
                   for m, ((lo, hi), k, s, q) in cost.items()])
    out += ["", "## Per attack", ""]
    for m, entry in sorted(summary["models"].items()):
        for n, s in sorted(entry["norms"].items()):
            out += [f"**{m}, {NORM_NAMES[n]}** ({s['images']} images)", ""]
            out += _table(["attack", "kind", "median", f"acc@{s['epsilon']:g}", "success", "wins", "no gradient",
                           "queries / image", "s / image"], _attack_rows(s, n, kinds, records, m)) + [""]
    out += ["## Attack budgets", ""]
    out += _table(["attack", "norm", "counts in", "kind", "models", "hyper-parameters", "search", "gradient",
                   "max queries"], [[r[k] for k in BUDGET_COLUMNS] for r in settings["budgets"]]) + [""]
    skipped = {(a, why) for p in settings.get("plans", {}).values() for a, why in p["skipped"].items()}
    out += ["Skipped: " + "; ".join(f"{a} ({why})" for a, why in sorted(skipped)) if skipped else "Skipped: none", ""]
    out += ["## Commands", ""] + [f"- `{r['command'] or '(library call)'}` — {r['status']}, {r['wall_seconds']:.0f} s, "
                                  f"models {', '.join(r['models'])}, started {r['started']}" for r in runs]
    path = root / REPORT_FILE
    path.write_text("\n".join(out) + "\n")
    return path
