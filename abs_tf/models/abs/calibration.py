"""Per-class loss scalings of Binary ABS, calibrated for a given set of VAEs.

Binary ABS multiplies class c's loss by a scaling s_c before the argmin (SPEC §1). The
release's scalings ``[1, 0.96, 1.001, 1.06, ...]`` are a calibration of *its* VAEs; VAEs
trained here need their own. `fit_class_scalings` chooses s (s_0 fixed to 1: only ratios
matter) to maximise the accuracy of ``argmin_c s_c * loss_c`` on labelled images that are not
test images, by coordinate ascent over a grid; among equally accurate values the one closest
to 1 wins, so a class whose scaling changes nothing keeps 1. Nine fitted numbers can overfit
the few misclassified images they are fitted to, so `choose_scalings` compares the fit with
fixed candidates (all ones, the release's) by k-fold held-out accuracy and keeps the best.

The JSON file written by `save_scalings` sits next to the VAE weights
(``<weights_dir>/binary_scalings.json``) and is read by ``ABS.from_weights(binary=True)``.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from abs_tf.constants import NUM_CLASSES

SCALINGS_FILE = "binary_scalings.json"
DEFAULT_GRID = tuple(np.round(np.arange(0.90, 1.10 + 1e-9, 0.005), 3))


def scaled_accuracy(losses, labels, scalings) -> float:
    """Accuracy of ``argmin_c scalings[c] * losses[:, c]``; losses [N,10], labels [N]."""
    losses, labels = np.asarray(losses, np.float64), np.asarray(labels)
    return float(np.mean(np.argmin(losses * np.asarray(scalings, np.float64), axis=1) == labels))


def fit_class_scalings(losses, labels, grid=DEFAULT_GRID, rounds: int = 3) -> np.ndarray:
    """Per-class scalings [10] (s_0 = 1) that maximise `scaled_accuracy` on (losses, labels).

    Args:
      losses: [N, 10] unscaled class losses (non-negative, finite), e.g. ``ABS.search(x)["losses"]``.
      labels: [N] int labels in 0..9.
      grid: candidate values for each s_c, c = 1..9.
      rounds: passes of coordinate ascent over the classes (stops early when nothing changes).
    Returns: float64 [10].
    """
    losses = np.asarray(losses, np.float64)
    labels = np.asarray(labels)
    if losses.ndim != 2 or losses.shape[1] != NUM_CLASSES or len(losses) != len(labels) or len(losses) == 0:
        raise ValueError(f"need losses [N, 10] and labels [N] with N > 0, got {losses.shape} and {labels.shape}")
    if not np.all(np.isfinite(losses)) or np.any(losses < 0):
        raise ValueError("losses must be finite and non-negative")
    if labels.min() < 0 or labels.max() >= NUM_CLASSES:
        raise ValueError(f"labels must be in 0..9, got range {labels.min()}..{labels.max()}")
    grid = np.asarray(sorted(grid, key=lambda g: abs(g - 1.0)), np.float64)   # ties -> closest to 1
    if grid.size == 0 or np.any(grid <= 0):
        raise ValueError("grid values must be positive")
    scalings = np.ones(NUM_CLASSES)
    for _ in range(rounds):
        changed = False
        for c in range(1, NUM_CLASSES):
            accuracies = [scaled_accuracy(losses, labels, np.r_[scalings[:c], g, scalings[c + 1:]]) for g in grid]
            best = grid[int(np.argmax(accuracies))]        # argmax takes the first maximum
            if best != scalings[c]:
                scalings[c], changed = best, True
        if not changed:
            break
    return scalings


def choose_scalings(losses, labels, fixed, folds: int = 5, seed: int = 0, grid=DEFAULT_GRID):
    """Fitted scalings or one of the ``fixed`` candidates, whichever generalises best.

    Every fold of a seeded k-fold split is held out once: the scalings are fitted on the other
    folds and all candidates are scored on the held-out one. The candidate with the best mean
    held-out accuracy wins (ties: the fixed candidates in their given order, then the fit);
    "fitted" means the fit on all images.

    Args:
      losses, labels: as for `fit_class_scalings`.
      fixed: dict name -> 10 scalings, e.g. {"ones": [1]*10, "release": BINARY_SCALINGS}.
    Returns: dict with ``choice`` (a name of ``fixed`` or "fitted"), ``scalings`` float64 [10]
      (the chosen ones), ``fitted`` (the fit on all images, whatever the choice) and
      ``held_out_accuracy`` {name: mean over folds}.
    """
    losses, labels = np.asarray(losses, np.float64), np.asarray(labels)
    if not 2 <= folds <= len(labels):
        raise ValueError(f"folds must be in 2..{len(labels)}, got {folds}")
    candidates = {name: validated_scalings(v, name) for name, v in fixed.items()}
    if "fitted" in candidates:
        raise ValueError("'fitted' is reserved for the fitted scalings")
    fold_of = np.random.default_rng(seed).permutation(len(labels)) % folds
    scores = {name: [] for name in [*candidates, "fitted"]}
    for k in range(folds):
        train, held_out = fold_of != k, fold_of == k
        fitted = fit_class_scalings(losses[train], labels[train], grid)
        for name, values in [*candidates.items(), ("fitted", fitted)]:
            scores[name].append(scaled_accuracy(losses[held_out], labels[held_out], values))
    means = {name: float(np.mean(v)) for name, v in scores.items()}
    choice = max(means, key=means.get)                     # the first of equal maxima
    fitted = fit_class_scalings(losses, labels, grid)
    return {"choice": choice, "scalings": fitted if choice == "fitted" else candidates[choice],
            "fitted": fitted, "held_out_accuracy": means}


def save_scalings(path, scalings, **record):
    """Writes ``{"scalings": [...10 floats], **record}`` as JSON."""
    scalings = validated_scalings(scalings, path)
    Path(path).write_text(json.dumps({"scalings": scalings.tolist(), **record}, indent=2) + "\n")


def load_scalings(path) -> np.ndarray:
    """Reads a file written by `save_scalings`; ValueError naming the file if it is malformed."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
        values = data["scalings"]
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise ValueError(f"cannot read Binary ABS scalings from {path}: {type(e).__name__}: {e}") from e
    return validated_scalings(values, path)


def validated_scalings(scalings, source: str = "argument") -> np.ndarray:
    """float64 [10] from any 10 positive finite numbers; ValueError naming ``source`` otherwise."""
    try:
        values = np.asarray(scalings, np.float64)
    except (TypeError, ValueError) as e:
        raise ValueError(f"loss scalings ({source}) must be 10 positive numbers: {e}") from e
    if values.shape != (NUM_CLASSES,) or not np.all(np.isfinite(values)) or np.any(values <= 0):
        raise ValueError(f"loss scalings ({source}) must be 10 positive finite numbers, got {scalings!r}")
    return values
