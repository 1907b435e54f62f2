"""Times the original PyTorch release of ABS (its own, unmodified code) on this machine.

The ratio to the original in BENCHMARKS.md needs both on the same machine in the same hour.
This script runs in a separate environment with torch, torchvision and scipy (not in
requirements.txt; the release's code imports them), on a checkout of the release:

  python -m venv /tmp/torchenv && /tmp/torchenv/bin/pip install torch torchvision scipy
  git clone https://github.com/bethgelab/AnalysisBySynthesis /tmp/abs_release   # its weights are in the repo
  /tmp/torchenv/bin/python benchmarks/bench_original_release.py --code=/tmp/abs_release --batch=100

It builds `models.get_VAE(n_iter=50)` (ABS: 8000 samples, 50 iterations), decodes the samples
once (timed apart, as the release's README does), then times `--repeats` calls on test images
0..batch-1 with torch on `--threads` threads and checks the logits against the reference file.
(argparse, not absl: the torch environment need not have absl.)
"""

import argparse
import gzip
import os
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
from abs_tf.paths import reference_dir  # noqa: E402  (standard library only: fine in the torch environment)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--code", required=True, help="checkout of bethgelab/AnalysisBySynthesis")
    parser.add_argument("--batch", type=int, default=100, help="images per call (the release's README: 100)")
    parser.add_argument("--repeats", type=int, default=3, help="timed calls")
    parser.add_argument("--threads", type=int, default=2, help="torch.set_num_threads")
    parser.add_argument("--data_dir", default=os.environ.get("ABS_TF_DATA_DIR", str(REPO.parent / "shared/data/mnist")))
    parser.add_argument("--reference", default=str(reference_dir() / "abs_logits_test0000-0999.npz"))
    args = parser.parse_args()
    if not 1 <= args.batch <= 1000:
        parser.error("--batch must be in 1..1000 (the reference logits cover test images 0..999)")

    import torch

    torch.set_num_threads(args.threads)
    sys.path.insert(0, args.code)
    from abs_models import models  # the release's code

    with gzip.open(Path(args.data_dir) / "t10k-images-idx3-ubyte.gz") as f:
        images = np.frombuffer(f.read(), np.uint8, offset=16).reshape(-1, 1, 28, 28)
    x = torch.from_numpy(images[:args.batch].astype(np.float32) / 255.0)
    model = models.get_VAE(n_iter=50)
    t = time.perf_counter()
    with torch.no_grad():
        model(x[:1])  # the first call decodes the 8000 samples of every class (cached afterwards)
    print(f"set-up (decode 8000 samples x 10 classes, 1 image): {time.perf_counter() - t:.1f} s", flush=True)
    reference = np.load(args.reference)["abs_logits"][:args.batch]
    for _ in range(args.repeats):
        t = time.perf_counter()
        logits = model(x).detach().numpy()
        seconds = time.perf_counter() - t
        print(f"batch {args.batch}: {args.batch / seconds:.2f} images/s ({seconds:.2f} s), "
              f"max |logit - reference| {np.abs(logits - reference).max():.1e}", flush=True)


if __name__ == "__main__":
    main()
