"""Copies trained class VAEs from run directories into weights/abs_vae/ and writes metrics.json.

  python scripts/collect_vae_weights.py runs/abs_vae runs/abs_vae_part2 ...

Each run directory holds vae_{c}.weights.h5 (stamped with its class), vae_{c}.json (train.py's
per-class record) and config.json (the run's training configuration and the command and commit
that started it). The first run holding a class wins; the copied weights are loaded back with
their identity checked. The test metrics are recomputed here with `evaluate_vae` (the ABS test-time loss,
prior weight 1, whatever beta the run trained with), so that stages are comparable; the
previous metrics.json, if any, is kept under each class's ``previous`` key.
"""

import json
import os
import shutil
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from abs_tf import data  # noqa: E402
from abs_tf.models.abs.vae_weights import load_vaes
from abs_tf.training.vae import evaluate_vae  # noqa: E402

out = Path("weights/abs_vae")
out.mkdir(parents=True, exist_ok=True)
previous = json.loads((out / "metrics.json").read_text()) if (out / "metrics.json").is_file() else {}
rows, configs = {}, {}
for run in map(Path, sys.argv[1:]):
    configs[str(run)] = json.loads((run / "config.json").read_text())
    for c in range(10):
        metrics = run / f"vae_{c}.json"
        if metrics.is_file() and c not in rows:
            shutil.copy(run / f"vae_{c}.weights.h5", out / f"vae_{c}.weights.h5")
            rows[c] = dict(json.loads(metrics.read_text()), run=str(run), beta=configs[str(run)].get("beta", 1.0))
missing = sorted(set(range(10)) - set(rows))
if missing:
    sys.exit(f"no trained VAE for classes {missing}")

test_images, test_labels = data.load_mnist("test", os.environ.get("ABS_TF_DATA_DIR"))
for c, vae in enumerate(load_vaes(out)):
    rows[c].update(evaluate_vae(vae, test_images[test_labels == c]))
    if str(c) in previous:
        rows[c]["previous"] = previous[str(c)]
(out / "metrics.json").write_text(json.dumps({str(c): rows[c] for c in range(10)}, indent=2))
print(json.dumps({"configs": configs, "rows": {c: {k: v for k, v in r.items() if k != "previous"}
                                               for c, r in rows.items()}}, indent=2))
