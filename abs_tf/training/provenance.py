"""Shipping a finished classifier run: its weights, metrics and a PROVENANCE.md."""

from __future__ import annotations

import shutil
from pathlib import Path

from abs_tf.training import run_dir
from abs_tf.models.cnn import WEIGHTS_FILE
from abs_tf.training.classifier import METRICS_FILE


def write_provenance(run, weights_dir, notes: str = "") -> Path:
    """Copies ``run/model.weights.h5`` to ``weights_dir`` and writes ``metrics.json`` (the run's
    record and configuration) and ``PROVENANCE.md`` (command, git commit, seed, wall time,
    accuracies; ``notes`` appended as Markdown).

    ``run`` must hold ``metrics.json`` and ``config.json`` as written by a training run
    (`abs_tf.training.run`). Returns the path of ``PROVENANCE.md``.
    """
    run, weights_dir = Path(run), Path(weights_dir)
    metrics = run_dir.read_json(run / METRICS_FILE)
    config = run_dir.read_json(run / run_dir.CONFIG_FILE)
    weights_dir.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(run / WEIGHTS_FILE, weights_dir / WEIGHTS_FILE)
    run_dir.write_json(weights_dir / METRICS_FILE, {**metrics, "train_config": config})

    def pct(v):
        return f"{100 * v:.1f} %"

    lines = [
        f"# Provenance of `{weights_dir.name}/{WEIGHTS_FILE}`", "",
        "- Command (from the repository root, with `ABS_TF_DATA_DIR` set to the MNIST IDX directory):",
        f"  `{config['command']}`",
        f"- Git commit at run time: `{config['git_commit']}`",
        f"- Seed {config['seed']}; {config['epochs']} epochs, batch {config['batch_size']}, Adam, peak learning rate "
        f"{config['learning_rate']} ({config.get('schedule')} schedule), augmentation "
        f"{'on' if config.get('augment') else 'off'}",
        f"- Training wall time: {metrics['train_wall_time_s'] / 60:.1f} min on a shared, heavily loaded 2-core CPU "
        "machine (no GPU; other training jobs ran at the same time)",
        f"- Clean test accuracy: {pct(metrics['test_accuracy'])} on all 10000 test images "
        f"({metrics['test_accuracy']:.4f}); {pct(metrics['test_accuracy_first1000'])} on the first 1000 "
        f"({metrics['test_accuracy_first1000']:.4f})",
    ]
    if config.get("init_from"):
        lines.insert(4, f"- Fine-tuned from the weights in `{config['init_from']}` (how those were made: see the "
                        "notes below)")
    for key, value in metrics.items():
        if key.startswith("pgd") and key.endswith("wall_time_s"):
            lines.append(f"- `{key}`: {value / 60:.1f} min")
        elif key.startswith("pgd"):
            lines.append(f"- `{key}` (PGD of abs_tf.attacks, eps 0.3, step 0.01, random start): {pct(value)} "
                         f"({value:.4f})")
    lines += ["- The same figures, the per-epoch history and the full configuration: `metrics.json`", ""]
    if notes:
        lines += [notes.rstrip(), ""]
    path = weights_dir / "PROVENANCE.md"
    path.write_text("\n".join(lines))
    return path
