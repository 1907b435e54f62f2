"""PNG figures of an evaluation (matplotlib's Agg canvas, no pyplot: no global state).

* `accuracy_curves`: accuracy vs perturbation size per norm (L0, L2, L∞), one line per model,
  the paper's points (accuracy at ε, median at 50 %) as markers of the model's colour;
* `gallery`: per norm, for each model the minimal verified adversarials of a few test images
  (the same images for every model where possible): original, adversarial, perturbation,
  with the true and adversarial classes and the distance;
* `distal_gallery`: per model (rows) its first distal adversarials (`abs_tf.evaluation.distal`:
  the same targets in each column), titled with the target and its probability.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from abs_tf.evaluation import distal, protocol
from abs_tf.evaluation.records import load_adversarials

NORM_LABELS = {"l0": "L0 (pixels changed)", "l2": "L2", "linf": "L∞"}
COLORS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22",
          "#17becf")


def _save(fig, path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    FigureCanvasAgg(fig)
    fig.savefig(path, dpi=110)
    return path


def accuracy_curves(summary: dict, path, paper=None) -> Path:
    """Writes the curves of ``summary`` (`protocol.summarize`) to ``path``.

    paper: optional {model: {norm: (accuracy at ε, median)}} drawn as markers.
    """
    fig = Figure(figsize=(15, 4.4))
    axes = fig.subplots(1, len(protocol.PROTOCOL_NORMS))
    models = sorted(summary["models"])
    for ax, norm in zip(axes, protocol.PROTOCOL_NORMS):
        eps = summary["protocol"]["curve_epsilons"][norm]
        if not any(norm in summary["models"][m]["norms"] for m in models):
            ax.text(0.5, 0.5, "not run", transform=ax.transAxes, ha="center", color="grey")
        for i, m in enumerate(models):
            entry = summary["models"][m]["norms"].get(norm)
            if not entry:
                continue
            color = COLORS[i % len(COLORS)]
            ax.plot(eps, [math.nan if v is None else v for v in entry["curve"]], color=color, drawstyle="steps-post",
                    label=f"{m} ({entry['images']} images)")
            if paper and m in paper and norm in paper[m]:
                acc, med = paper[m][norm]
                ax.plot([protocol.THRESHOLDS[norm]], [acc], "o", color=color, fillstyle="none")
                ax.plot([med], [0.5], "x", color=color)
        ax.axvline(protocol.THRESHOLDS[norm], linestyle=":", color="grey")
        ax.set_xlabel(f"{NORM_LABELS[norm]} perturbation size")
        ax.set_ylabel("accuracy (no adversarial within ε)")
        ax.set_ylim(-0.02, 1.02)
        ax.set_xlim(eps[0], eps[-1])
        ax.grid(alpha=0.3)
    for ax in axes:
        if ax.get_lines()[1:]:  # more than the threshold line: the first panel with models
            ax.legend(fontsize=7, loc="upper right")
            break
    if paper:
        fig.suptitle("lines: this evaluation; markers: the paper (o accuracy at ε, x median)", fontsize=9)
    fig.tight_layout()
    return _save(fig, path)


def _choose(results: dict, count: int) -> dict:
    """Per model, up to ``count`` test indices broken at distance > 0, preferring indices broken
    on every model (so the rows compare the same images)."""
    broken = {m: [int(i) for i, w, f in zip(r.indices, r.winners, r.failed)
                  if w not in (None, protocol.CLEAN) and not f] for m, r in results.items()}
    common = sorted(set.intersection(*(set(v) for v in broken.values()))) if broken else []
    out = {}
    for m, mine in broken.items():
        chosen = common[:count]
        chosen += [i for i in mine if i not in chosen][:count - len(chosen)]
        out[m] = chosen
    return out


def gallery(records, images, root, norm: str, path, *, expected=None, count: int = 4) -> Path:
    """Minimal adversarials in ``norm`` per model (module doc), written to ``path``.

    Args: records: `Record`s; images: the test set [T, 28, 28, 1] (indexed by record index);
      root: the output directory (shards); expected: {model: {norm: [attack, ...]}}.
    """
    models = sorted({r.model for r in records})
    results = {}
    for m in models:
        attacks = (expected or {}).get(m, {}).get(norm)
        result = protocol.per_image_minimum(records, m, norm, attacks)
        if result.indices.size:
            results[m] = result
    chosen = _choose(results, count)
    by_key = {r.key: r for r in records}
    rows = [m for m in results if chosen[m]] or list(results)[:1]
    fig = Figure(figsize=(3 * 1.6 * count, 1.9 * max(len(rows), 1) + 0.4))
    axes = np.atleast_2d(fig.subplots(max(len(rows), 1), 3 * count, squeeze=False))
    for ax in axes.ravel():
        ax.set_axis_off()
    for row, m in enumerate(rows):
        result = results[m]
        winners = dict(zip((int(i) for i in result.indices), result.winners))
        picked = [by_key[(m, winners[i], i)] for i in chosen.get(m, [])]
        adversarials = load_adversarials(root, picked) if picked else []
        axes[row, 0].text(-0.5, 0.5, m, transform=axes[row, 0].transAxes, rotation=90, ha="center", va="center",
                          fontsize=9)
        for k, (r, adv) in enumerate(zip(picked, adversarials)):
            x = np.asarray(images[r.index], np.float32)[..., 0]
            a = adv[..., 0]
            d = a - x
            scale = max(float(np.abs(d).max()), 1e-6)
            ax_x, ax_a, ax_d = axes[row, 3 * k:3 * k + 3]
            ax_x.imshow(x, cmap="gray", vmin=0, vmax=1)
            ax_x.set_title(f"#{r.index}: {r.label}", fontsize=8)
            ax_a.imshow(a, cmap="gray", vmin=0, vmax=1)
            ax_a.set_title(f"-> {r.prediction} ({r.attack})", fontsize=7)
            ax_d.imshow(d, cmap="RdBu_r", vmin=-scale, vmax=scale)
            value = r.distances[norm]
            ax_d.set_title(f"{norm} {value:.0f}" if norm == "l0" else f"{norm} {value:.2f}", fontsize=8)
    fig.suptitle(f"minimal {NORM_LABELS[norm]} adversarials over all attacks (original, adversarial, "
                 "perturbation in red/blue)", fontsize=9)
    fig.tight_layout()
    return _save(fig, path)


def distal_gallery(root, models, path, *, count: int = 6) -> Path:
    """The first ``count`` distal adversarials of each of ``models`` stored in output directory
    ``root`` (one row per model), written to ``path``; titles: target and its probability."""
    models = list(models)
    fig = Figure(figsize=(1.5 * count + 0.6, 1.7 * max(len(models), 1) + 0.4))
    axes = np.atleast_2d(fig.subplots(max(len(models), 1), count, squeeze=False))
    for ax in axes.ravel():
        ax.set_axis_off()
    for row, m in enumerate(models):
        stored = distal.load(root, m)
        axes[row, 0].text(-0.25, 0.5, m, transform=axes[row, 0].transAxes, rotation=90, ha="center", va="center",
                          fontsize=9)
        for k in range(min(count, stored["targets"].size)):
            target = int(stored["targets"][k])
            p = float(stored["probabilities"][k, target])
            axes[row, k].imshow(stored["images"][k, ..., 0], cmap="gray", vmin=0, vmax=1)
            axes[row, k].set_title(f"target {target}: p {p:.2f}", fontsize=8,
                                   color="#d62728" if stored["reached"][k] else "black")
    fig.suptitle("distal adversarials: noise raised towards a target class (red: reached the threshold)", fontsize=9)
    fig.tight_layout()
    return _save(fig, path)
