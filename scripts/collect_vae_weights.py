"""Copies trained class VAEs from run directories into weights/abs_vae/ and writes PROVENANCE.md.

  python scripts/collect_vae_weights.py runs/abs_vae runs/abs_vae_part2 ...

Each run directory holds vae_{c}.weights.h5, vae_{c}.json (train.py's per-class metrics) and
config.json (the command, commit and flags of its last invocation).
"""

import json
import shutil
import sys
from pathlib import Path

out = Path("weights/abs_vae")
out.mkdir(parents=True, exist_ok=True)
rows, configs = {}, {}
for run in map(Path, sys.argv[1:]):
    configs[str(run)] = json.loads((run / "config.json").read_text())
    for c in range(10):
        metrics = run / f"vae_{c}.json"
        if metrics.is_file() and c not in rows:
            shutil.copy(run / f"vae_{c}.weights.h5", out / f"vae_{c}.weights.h5")
            rows[c] = dict(json.loads(metrics.read_text()), run=str(run))
missing = sorted(set(range(10)) - set(rows))
if missing:
    sys.exit(f"no trained VAE for classes {missing}")
(out / "metrics.json").write_text(json.dumps({str(c): rows[c] for c in range(10)}, indent=2))
print(json.dumps({"configs": configs, "rows": rows}, indent=2))
