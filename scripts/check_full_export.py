"""Checks the full-size serving exports and measures them as a client sees them.

For each model: export it (full settings: ABS 8000 samples, 50 steps), then in a fresh Python
process in which abs_tf cannot be imported (`abs_tf.export.isolation`) load it and time the
load, the first request (one image) and steady requests (one image, and a batch), and compare
its logits on the batch (the first test images) with the in-process model's. For
--variant_models also the XLA-compiled export and the export that stores ABS's decoded samples,
for the choice in README's Export section.

  python scripts/check_full_export.py --output=out/export_check.json     # every model, ~20-40 min on 2 cores
  python scripts/check_full_export.py --models=abs,cnn --repeats=3

Prints a Markdown table and writes the figures to --output (JSON).
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path

from absl import app, flags, logging

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

FLAGS = flags.FLAGS
VARIANTS = {"default": {}, "xla": {"xla": True}, "stored_samples": {"store_decoded_samples": True}}

CLIENT = r"""
import json, re, time, numpy as np, tensorflow as tf
def peak_rss_mb():   # VmHWM: this process's own peak (ru_maxrss would include the forking parent's)
    return int(re.search(r"VmHWM:\s+(\d+) kB", open("/proc/self/status").read()).group(1)) / 1024
x = np.load({images!r})
t = time.perf_counter(); m = tf.saved_model.load({path!r}); load_s = time.perf_counter() - t
rss_after_load_mb = peak_rss_mb()
serve = m.signatures["serving_default"]
def timed(images, repeats):
    times = []
    for _ in range(repeats):
        t = time.perf_counter(); out = serve(images=images); times.append(time.perf_counter() - t)
    return out, times
out, first = timed(x[:1], 1)
_, steady = timed(x[:1], {repeats})
timed(x[:{batch}], 1)                                      # a new batch size: XLA compiles here
out, batch = timed(x[:{batch}], {repeats})
np.save({logits!r}, out["logits"].numpy())
print(json.dumps(dict(load_s=load_s, first_request_s=first[0], steady_s_per_image=min(steady),
                      batch_s_per_image=min(batch) / {batch}, peak_rss_after_load_mb=rss_after_load_mb,
                      peak_rss_mb=peak_rss_mb())))
"""


def define_flags():
    from abs_tf import registry
    flags.DEFINE_list("models", registry.names(), "Registered models to check.")
    flags.DEFINE_list("variant_models", ["abs", "cnn"], "Models also exported as the XLA variant (and, for ABS "
                      "models, with stored decoded samples).")
    flags.DEFINE_string("export_base", None, "Where the exports go (default: a temporary folder, deleted).")
    flags.DEFINE_integer("repeats", 5, "Timed requests per measurement (the fastest is reported).", lower_bound=1)
    flags.DEFINE_integer("batch", 32, "Batch size of the batched measurement; these test images' logits are "
                         "compared with the in-process model's.", lower_bound=1)
    flags.DEFINE_string("output", "out/export_check.json", "Where the figures go (JSON).")


def _size_mb(path: Path) -> float:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) / 2 ** 20


def _measure(path: Path, images_file: Path, workdir: Path) -> dict:
    from abs_tf.export.isolation import run_without_abs_tf

    logits_file = workdir / "logits.npy"
    code = CLIENT.format(images=str(images_file), path=str(path), repeats=FLAGS.repeats, batch=FLAGS.batch,
                         logits=str(logits_file))
    proc = run_without_abs_tf(code, timeout=3600, env={"TF_CPP_MIN_LOG_LEVEL": "2"})
    if proc.returncode != 0:
        raise RuntimeError(f"client process failed for {path}:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1]), logits_file


def check_model(name: str, images, labels, images_file: Path, export_base: Path, workdir: Path) -> list:
    import numpy as np

    from abs_tf import registry
    from abs_tf.export.savedmodel import export_model
    from abs_tf.run_info import git_commit

    spec = registry.get_spec(name)
    start = time.perf_counter()
    model = registry.load_model(name, **spec.export_options)
    load_model_s = time.perf_counter() - start
    reference = np.asarray(model(images))
    variants = ["default"]
    if name in FLAGS.variant_models:
        variants += ["xla"] + (["stored_samples"] if spec.family == "abs" else [])
    rows = []
    for variant in variants:
        start = time.perf_counter()
        path = export_model(model, spec, name, export_base / variant, provenance={"abs_tf_commit": git_commit()},
                            **VARIANTS[variant])
        export_s = load_model_s + time.perf_counter() - start
        figures, logits_file = _measure(path, images_file, workdir)
        logits = np.load(logits_file)
        rows.append(dict(model=name, variant=variant, size_mb=_size_mb(path), export_s=export_s, **figures,
                         max_abs_diff_in_process=float(np.abs(logits - reference).max()),
                         accuracy=float(np.mean(logits.argmax(1) == labels))))
    return rows


def _table(rows) -> str:
    head = ("model", "variant", "size MB", "export s", "load s", "first request s", "steady s/image (B=1)",
            f"s/image (B={FLAGS.batch})", "peak RSS MB after load", "peak RSS MB", "max abs diff", "accuracy")
    keys = ("model", "variant", "size_mb", "export_s", "load_s", "first_request_s", "steady_s_per_image",
            "batch_s_per_image", "peak_rss_after_load_mb", "peak_rss_mb", "max_abs_diff_in_process", "accuracy")
    fmt = lambda v: v if isinstance(v, str) else (f"{v:.1e}" if abs(v) < 1e-3 else f"{v:.3g}")  # noqa: E731
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(fmt(row[k]) for k in keys) + " |" for row in rows]
    return "\n".join(lines)


def main(argv):
    del argv
    import numpy as np

    from abs_tf import data

    logging.set_verbosity(logging.WARNING)
    images, labels = data.load_mnist("test")
    images, labels = images[:FLAGS.batch], labels[:FLAGS.batch]
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        np.save(workdir / "images.npy", images)
        export_base = Path(FLAGS.export_base) if FLAGS.export_base else workdir / "exports"
        rows = []
        for name in FLAGS.models:
            new = check_model(name, images, labels, workdir / "images.npy", export_base, workdir)
            print("\n".join(_table(new).splitlines()[2:]), flush=True)
            rows += new
    output = Path(FLAGS.output)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(rows, indent=2) + "\n")
    print(_table(rows))
    bad = [f"{r['model']}/{r['variant']}" for r in rows
           if r["max_abs_diff_in_process"] > 1e-5 and r["variant"] != "xla"]   # XLA rounds differently
    if bad:
        sys.exit(f"exports differ from the in-process model by more than 1e-5: {', '.join(bad)}")


if __name__ == "__main__":
    define_flags()
    app.run(main)
