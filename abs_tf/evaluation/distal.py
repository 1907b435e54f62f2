"""Distal ("trash") adversarials per model, once per output directory.

    row = run_distal("cnn", cnn, presets.DISTAL["table1"], seed=0, root="results/table1")

The paper's check (Schott et al. 2019, Fig. 4): start from uniform noise and raise a target
class's probability; the CNN (and Madry et al.) reach high confidence (>= 0.9) on noise-like
images, ABS should rarely. Per model, `abs_tf.attacks.decision.distal_adversarials` runs on
``budget.images`` noise images (targets 0, 1, ..., 9, 0, ... ; noise seeded by the evaluation's
seed), with the model's own gradient (ABS: its envelope gradient; a declared binarization
straight through) or, for a model without input gradient, gradients estimated from queries.

Stored in the output directory (`DISTAL_DIR`), written atomically and never repeated (a
resumed run finds them and skips the model):

* ``distal/<model>.npz``: ``images`` float32 [N, 28, 28, 1] in [0, 1], ``targets`` int64 [N],
  ``probabilities`` float32 [N, 10] (re-evaluated after the search), ``reached`` bool [N],
  ``steps`` int64 [N], ``queries`` float64 [N];
* ``distal/<model>.json``: the summary row (`ROW_FIELDS`), written after the .npz: its presence
  marks the model done. ``seconds`` (wall time) is the only field that is not deterministic.

Distal adversarials do not depend on the test images, so a sharded run makes them in shard 0
only (the other shards skip them) and `abs_tf.evaluation.merge` carries the files over.
"""

from __future__ import annotations

import io
import json
import time
from pathlib import Path

import numpy as np

from abs_tf.attacks.decision import distal_adversarials
from abs_tf.evaluation.records import check_name, write_atomic
from abs_tf.models.preprocessing import front_end

DISTAL_DIR = "distal"
ARRAYS = ("images", "targets", "probabilities", "reached", "steps", "queries")
ROW_FIELDS = ("model", "images", "steps_budget", "threshold", "loss", "gradient", "seed", "reached_fraction",
              "mean_probability", "median_probability", "mean_steps", "queries_per_image", "seconds")
ESTIMATOR = {"samples": 50, "sigma": 0.01}


def paths(root, model: str) -> tuple:
    """(npz, json) paths of ``model``'s distal adversarials in output directory ``root``."""
    folder, name = Path(root) / DISTAL_DIR, check_name(model, "model")
    return folder / f"{name}.npz", folder / f"{name}.json"  # names may hold dots: no with_suffix


def done(root, model: str) -> bool:
    arrays, row = paths(root, model)
    return arrays.is_file() and row.is_file()


def _gradient_name(model, gradient: str) -> str:
    if gradient == "estimated":
        return f"estimated (Gaussian, {ESTIMATOR['samples']} antithetic pairs, sigma {ESTIMATOR['sigma']})"
    declared = front_end(model)
    if declared is not None:
        return f"model's own, straight through its {getattr(declared, 'name', declared)} front end"
    return "model's own"


def summary_row(model: str, result, budget, gradient: str, seed: int, seconds: float) -> dict:
    """The JSON row of one model's `DistalResult` (`ROW_FIELDS`)."""
    confidence = result.confidence.astype(np.float64)
    return {"model": model, "images": int(result.targets.size), "steps_budget": int(budget.steps),
            "threshold": float(result.threshold), "loss": budget.loss, "gradient": gradient, "seed": int(seed),
            "reached_fraction": float(np.mean(result.reached)), "mean_probability": float(np.mean(confidence)),
            "median_probability": float(np.median(confidence)), "mean_steps": float(np.mean(result.steps)),
            "queries_per_image": float(np.mean(result.queries)), "seconds": round(float(seconds), 3)}


def run_distal(name: str, model, budget, *, seed: int, root) -> dict:
    """Makes and stores ``name``'s distal adversarials unless stored already (module doc);
    returns its row, or {} where ``budget`` has no images.

    Args: model: images float32 [N, 28, 28, 1] in [0, 1] -> logits [N, 10]. budget: a
      `presets.DistalBudget`. seed: the evaluation's seed (the noise). root: the output directory.
    """
    if budget.images <= 0:
        return {}
    if done(root, name):
        return read_row(root, name)
    targets = np.arange(budget.images, dtype=np.int64) % 10
    options = dict(seed=seed, steps=budget.steps, threshold=budget.threshold, loss=budget.loss)
    t0 = time.perf_counter()
    gradient = "model"
    try:
        result = distal_adversarials(model, targets, **options)
    except ValueError as e:
        if "no input gradient" not in str(e):
            raise
        gradient = "estimated"  # e.g. a model behind an undeclared non-differentiable step
        result = distal_adversarials(model, targets, gradient="estimated", **ESTIMATOR, **options)
    row = summary_row(name, result, budget, _gradient_name(model, gradient), seed, time.perf_counter() - t0)
    arrays, row_path = paths(root, name)
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **{k: getattr(result, k) for k in ARRAYS})
    write_atomic(arrays, buffer.getvalue())
    write_atomic(row_path, json.dumps(row, indent=2, sort_keys=True).encode())  # last: marks the model done
    return row


def read_row(root, model: str) -> dict:
    _, row = paths(root, model)
    try:
        return json.loads(row.read_text())
    except ValueError as e:
        raise ValueError(f"{row} is corrupt ({e}); delete it and its .npz to make them again") from e


def read_rows(root) -> dict:
    """{model: row} of every model with stored distal adversarials in ``root``."""
    folder = Path(root) / DISTAL_DIR
    if not folder.is_dir():
        return {}
    return {p.stem: read_row(root, p.stem) for p in sorted(folder.glob("*.json")) if done(root, p.stem)}


def load(root, model: str) -> dict:
    """{name: array} of `ARRAYS` for ``model`` (module doc)."""
    arrays, _ = paths(root, model)
    try:
        with np.load(arrays) as data:
            return {k: np.asarray(data[k]) for k in ARRAYS}
    except (OSError, ValueError, KeyError) as e:
        raise ValueError(f"distal adversarials {arrays} are missing or corrupt: {e}") from e


def copy_into(source, root, models=None) -> list:
    """Copies ``source``'s distal files (of ``models`` only, if given) into ``root`` (merge). A
    model already in ``root`` must hold the same images and targets (else ValueError); returns
    the models copied."""
    copied = []
    for model in read_rows(source):
        if models is not None and model not in models:
            continue
        if done(root, model):
            mine, theirs = load(root, model), load(source, model)
            if any(not np.array_equal(mine[k], theirs[k]) for k in ("images", "targets")):
                raise ValueError(f"merge: the distal adversarials of {model} differ between sources "
                                 f"(one of them {source})")
            continue
        for src, dst in zip(paths(source, model), paths(root, model)):
            write_atomic(dst, src.read_bytes())  # the .npz first: the .json marks it done
        copied.append(model)
    return copied


def summary(root) -> dict:
    """{model: row without ``seconds``}: the deterministic part, for summary.json."""
    return {m: {k: v for k, v in row.items() if k != "seconds"} for m, row in read_rows(root).items()}
