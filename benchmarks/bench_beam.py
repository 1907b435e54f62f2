"""Overhead of the Beam pipeline (`abs_tf.evaluation.beam_pipeline`) against the local run.

  python benchmarks/bench_beam.py --model=cnn --preset=quick --num_images=32 --num_shards=4

Three runs of the same evaluation (model, preset, images), each into a fresh directory and timed
end to end, model loading, merge and report included:

  local      `run_evaluation` of all images in this process, then the report (what
             ``evaluate.py`` does);
  beam-1     the pipeline on the DirectRunner, one worker (``--num_shards`` elements);
  beam-2     the same with 2 worker threads (``--direct_num_workers=2``, multi_threading).

Every run's summary.json must equal the local one (checked). Numbers are only comparable within
one run (shared machines are noisy).
"""

from __future__ import annotations

import dataclasses
import functools
import json
import sys
import tempfile
import time
from pathlib import Path

from absl import app, flags

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))   # run as a script from anywhere

from abs_tf import data, registry  # noqa: E402  (abs_tf before TensorFlow: its oneDNN setting)

FLAGS = flags.FLAGS
flags.DEFINE_string("model", "cnn", "Registry model name.")
flags.DEFINE_enum("preset", "quick", ["quick", "table1"], "Attack preset.")
flags.DEFINE_integer("num_images", 32, "Test images (from 0).", lower_bound=1)
flags.DEFINE_integer("batch_size", 16, "Images per attack call.", lower_bound=1)
flags.DEFINE_integer("num_shards", 2, "Pipeline elements (shards of the images).", lower_bound=1)
flags.DEFINE_list("runs", ["local", "beam-1", "beam-2"], "Which runs, in order.")
flags.DEFINE_string("output", None, "Optional JSON file for the results.")


def main(argv):
    del argv
    from abs_tf.evaluation import beam_pipeline, report
    from abs_tf.evaluation.runner import SUMMARY_FILE, run_evaluation
    from abs_tf.evaluation.settings import EvaluationConfig

    config = EvaluationConfig(preset=FLAGS.preset, num_images=FLAGS.num_images, batch_size=FLAGS.batch_size)
    workload = beam_pipeline.Workload(load_model=registry.load_model,
                                      load_test_set=functools.partial(data.load_mnist, "test"))
    modes = {"beam-1": ["--direct_num_workers=1"],
             "beam-2": ["--direct_num_workers=2", "--direct_running_mode=multi_threading"]}
    results, summaries = [], {}
    with tempfile.TemporaryDirectory() as tmp:
        for run in FLAGS.runs:
            out = Path(tmp) / run
            t0 = time.perf_counter()
            if run == "local":
                images, labels = workload.load_test_set()
                run_evaluation(config, {FLAGS.model: registry.load_model(FLAGS.model)}, images, labels, out)
                report.write_report(out, images)
            else:
                beam_pipeline.run_pipeline(
                    dataclasses.replace(config, num_shards=FLAGS.num_shards), (FLAGS.model,), workload,
                    out, ["--runner=DirectRunner", *modes[run]])
            seconds = time.perf_counter() - t0
            summaries[run] = (out / SUMMARY_FILE).read_bytes()
            results.append({"run": run, "seconds": round(seconds, 2),
                            "summary_equals_first": summaries[run] == summaries[FLAGS.runs[0]]})
            print(f"{run:8s} {seconds:8.2f} s   summary equals {FLAGS.runs[0]}'s: "
                  f"{results[-1]['summary_equals_first']}", flush=True)
    setup = {"model": FLAGS.model, "preset": FLAGS.preset, "num_images": FLAGS.num_images,
             "batch_size": FLAGS.batch_size, "num_shards": FLAGS.num_shards}
    if FLAGS.output:
        Path(FLAGS.output).write_text(json.dumps({"setup": setup, "runs": results}, indent=2))
    if not all(r["summary_equals_first"] for r in results):
        raise SystemExit("a run's summary differs from the first run's")


if __name__ == "__main__":
    app.run(main)
