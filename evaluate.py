"""Evaluates models of abs-tf on MNIST test images: clean accuracy, or robustness under attacks.

  python evaluate.py --model=abs --num_images=1000 --output_dir=out/abs            # clean accuracy
  python evaluate.py --models=cnn,madry,abs --preset=table1 --num_images=100 --output_dir=results/table1
  python evaluate.py ... --shard_index=0 --num_shards=4          # one shard per process or machine
  python evaluate.py --merge=dir0,dir1,dir2,dir3 --output_dir=results/table1       # then merge them
  python evaluate.py --model=cnn --preset=quick --num_images=5 --output_dir=out/quick   # a smoke test
  python evaluate.py ... --num_shards=64 --runner=DataflowRunner --project=P --region=R  # Beam (docs/beam.md)

Clean (``--preset=none``): <output_dir>/summary.json (accuracy, images/s, the configuration; for
models with certified bounds the median certified-L2 estimate) and per_image.npz (with several
models, one subdirectory each). Attacks (``--preset=quick|table1``, `abs_tf.evaluation`): per model,
attack and image one verified record in records.jsonl, the adversarials (.npz), summary.json,
report.md and figures; the same command resumes an interrupted run, and a run with other settings
into the same directory is refused. This driver maps flags to the library's configuration.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from absl import app, flags, logging

from abs_tf import registry
from abs_tf.run_info import git_commit

FLAGS = flags.FLAGS
PRESETS = ("none", "quick", "table1")

flags.DEFINE_string("model", None, "One registered model name (abs_tf/registry.py); same as --models=<name>.")
flags.DEFINE_list("models", None, "Registered model names, e.g. cnn,binary_cnn,nearest_neighbor,madry,binary_abs,"
                  "abs,abs_official,abs_stage7. Default: abs.")
flags.DEFINE_string("weights", None, "Weights directory (one model only; default: the model's shipped weights, "
                    "found from the package whatever the working directory; *_official: $ABS_TF_REFERENCE_DIR).")
flags.DEFINE_enum("preset", "none", PRESETS, "none: clean accuracy; quick: a few attacks (seconds on small "
                  "models); table1: the paper's attack set (abs_tf/evaluation/presets.py).")
flags.DEFINE_list("attacks", None, "Only these attacks of the preset (default: all); 'none' = --preset=none.")
flags.DEFINE_list("merge", None, "Merge these output directories (shards) into --output_dir; runs no model.")
flags.DEFINE_integer("num_images", 1000, "Number of test images, from --start.")
flags.DEFINE_integer("start", 0, "Index of the first test image.")
flags.DEFINE_integer("batch_size", None, "Images per model call (default 64) or per attack call (default 16).")
flags.DEFINE_integer("seed", 0, "Seed of every attack call (random starts, noise).", lower_bound=0)
flags.DEFINE_integer("shard_index", 0, "This process's shard of the images.", lower_bound=0)
flags.DEFINE_integer("num_shards", 1, "Number of shards the images are split into.", lower_bound=1)
flags.DEFINE_string("substitute", "substitute", "Model whose adversarials the transfer attacks try ('': none).")
flags.DEFINE_integer("determinism_images", 2, "Images on which each model's first attack is repeated (0: skip).",
                     lower_bound=0)
flags.DEFINE_boolean("recheck", True, "Re-verify the records of earlier runs before summarising.")
flags.DEFINE_integer("n_samples", 8000, "ABS: number of fixed latent samples (the release's models have their own).")
flags.DEFINE_integer("n_steps", 50, "ABS: search iterations (n_steps - 1 Adam updates, then the final evaluation).")
flags.DEFINE_enum("projection", None, ["original", "norm"],
                  "ABS: latent projection (default: 'original' for *_official, the model default otherwise).")
flags.DEFINE_boolean("xla", False, "ABS: XLA-compile the latent search (jit_compile).")
flags.DEFINE_string("data_dir", None, "MNIST IDX directory (default: $ABS_TF_DATA_DIR, else the Keras download).")
flags.DEFINE_string("output_dir", "out/eval", "Where the results go.")
flags.DEFINE_string("runner", None, "Run the attacks as an Apache Beam pipeline on this runner (DirectRunner, "
                    "DataflowRunner, FlinkRunner, SparkRunner; docs/beam.md): --num_shards elements per model, "
                    "<output_dir>/shards/*, merged into <output_dir>. Other Beam options (--direct_num_workers, "
                    "--project, ...) pass through. Default: evaluate in this process.")
flags.DEFINE_boolean("beam_merge", False, "Only merge the shards of a --runner run (<output_dir>/shards) into "
                     "<output_dir> and write its report.")

for _flag, _low, _what in (("num_images", 1, "test images"), ("start", 0, "index of the first test image"),
                           ("n_samples", 1, "fixed latent samples of ABS"),
                           ("n_steps", 1, "n_steps - 1 Adam updates, then the final evaluation")):
    flags.register_validator(_flag, lambda v, low=_low: v >= low, f"--{_flag} must be >= {_low} ({_what})")
flags.register_validator("batch_size", lambda v: v is None or v >= 1,
                         "--batch_size must be >= 1 (images per model or attack call)")
flags.register_multi_flags_validator(
    ["preset", "attacks"], lambda f: f["preset"] != "none" or f["attacks"] in (None, ["none"]),
    "--attacks chooses among the attacks of a preset: add --preset=quick or --preset=table1")
flags.register_validator("models", lambda v: v is None or (len(v) > 0 and all(m in registry.names() for m in v)),
                         f"--models must be registered models: {', '.join(registry.names())}")
flags.register_validator("model", lambda v: v is None or v in registry.names(),
                         f"--model must be one of the registered models: {', '.join(registry.names())}")
flags.register_multi_flags_validator(["model", "models"], lambda f: not (f["model"] and f["models"]),
                                     "give --model or --models, not both")
flags.register_multi_flags_validator(["shard_index", "num_shards"], lambda f: f["shard_index"] < f["num_shards"],
                                     "--shard_index must be < --num_shards")


def model_names() -> list:
    return list(FLAGS.models or [FLAGS.model or "abs"])


def model_options(spec, batch_size: int) -> dict:
    """The flags that configure a model, restricted to the options its registry entry accepts."""
    options = dict(n_samples=FLAGS.n_samples, n_steps=FLAGS.n_steps, jit_compile=FLAGS.xla, max_batch=batch_size)
    if FLAGS.projection:
        options["projection"] = FLAGS.projection
    return {k: v for k, v in options.items() if k in spec.search_options}


def load(name: str, batch_size: int):
    spec = registry.get_spec(name)
    t0 = time.time()
    model = registry.load_model(name, FLAGS.weights, **model_options(spec, batch_size))
    logging.info("model %s ready in %.1f s", name, time.time() - t0)
    return spec, model, time.time() - t0


def weights_setting(name: str) -> str:
    """The weights directory as settings.json keeps it: relative to the repository when inside
    it, so a run resumes from another clone of the project."""
    path = FLAGS.weights or registry.default_weights_dir(name)
    if not path:
        return ""
    from abs_tf.paths import REPO_ROOT

    resolved = Path(path).resolve()
    return str(resolved.relative_to(REPO_ROOT)) if resolved.is_relative_to(REPO_ROOT) else str(resolved)


def command() -> str:
    return " ".join([Path(sys.executable).name, *sys.argv])


def clean(names, images, labels, indices):
    import keras
    import numpy as np

    from abs_tf.evaluation.clean import evaluate_clean

    batch_size = FLAGS.batch_size or 64
    for name in names:
        out_dir = Path(FLAGS.output_dir) / (name if len(names) > 1 else "")
        out_dir.mkdir(parents=True, exist_ok=True)
        spec, model, setup_s = load(name, batch_size)
        bar = keras.utils.Progbar(len(images), unit_name="image", stateful_metrics=["accuracy"])
        result = evaluate_clean(model, images, labels, batch_size=batch_size, certified_bounds=spec.certified_bounds,
                                progress=lambda done, acc: bar.update(done, values=[("accuracy", acc)]))
        config = {k: FLAGS[k].value for k in ("weights", "num_images", "start", "batch_size", "data_dir",
                                               "output_dir")}
        config.update(model=name, weights_dir=str(FLAGS.weights or registry.default_weights_dir(name) or ""),
                      **(model.search_config() if hasattr(model, "search_config") else {}),
                      command=command(), git_commit=git_commit())
        summary = {"model": name, **result.summary(), "setup_seconds": setup_s, "config": config}
        (out_dir / "summary.json").write_text(json.dumps(summary, indent=2))
        np.savez_compressed(out_dir / "per_image.npz", **result.per_image(indices))
        bound = summary.get("certified_l2_estimate_median")
        print(f"{name}: clean accuracy {result.accuracy:.2%} on {len(images)} images "
              f"({summary['num_correct']} correct), {result.images_per_second:.1f} images/s"
              + (f", median certified-L2 estimate {bound:.3f}" if bound is not None else ""))
        print(f"wrote {out_dir / 'summary.json'}")


def attack_config(images):
    """The flags' `EvaluationConfig`, checked against the test set and the output directory."""
    from abs_tf import evaluation
    from abs_tf.evaluation.settings import ensure_writable

    try:
        config = evaluation.EvaluationConfig(
            preset=FLAGS.preset, attacks=tuple(FLAGS.attacks) if FLAGS.attacks else None, start=FLAGS.start,
            num_images=FLAGS.num_images, batch_size=FLAGS.batch_size or 16, seed=FLAGS.seed,
            shard_index=FLAGS.shard_index, num_shards=FLAGS.num_shards, recheck=FLAGS.recheck,
            determinism_images=FLAGS.determinism_images, command=command())
        evaluation.select_indices(config, len(images))
        if "://" in FLAGS.output_dir and not FLAGS.runner:
            raise ValueError(f"--output_dir={FLAGS.output_dir} is a URL: only a Beam run (--runner=...) writes "
                             "to URLs; the local evaluation needs a directory")
        if not FLAGS.runner or "://" not in FLAGS.output_dir:   # a pipeline's URL: run_pipeline checks it
            ensure_writable(FLAGS.output_dir)   # before minutes of model loading, not after hours of attacks
    except (ValueError, OSError) as e:
        raise app.UsageError(str(e))
    return config


def describe(name: str, batch_size: int):
    """A model's registry traits and the settings its records are made with (settings.json)."""
    from abs_tf import evaluation

    spec = registry.get_spec(name)
    traits = evaluation.ModelTraits(front_end=spec.front_end, latent_search=spec.family == "abs",
                                    certified_bounds=spec.certified_bounds,
                                    adversarial_projection=evaluation.presets.adversarial_projection(spec.front_end))
    return traits, {"weights": weights_setting(name),
                    **model_options(spec, batch_size)}


def attacks(names, images, labels):
    from abs_tf import evaluation

    config = attack_config(images)
    models, traits, settings = {}, {}, {}
    for name in names:
        _, models[name], _ = load(name, config.batch_size)
        traits[name], settings[name] = describe(name, config.batch_size)
    substitute = registry.load_model(FLAGS.substitute) if FLAGS.substitute else None
    evaluation.run_evaluation(config, models, images, labels, FLAGS.output_dir,
                              progress=evaluation.ProgbarProgress(logging.info), substitute=substitute,
                              traits=traits, model_settings=settings)
    print(f"wrote {evaluation.write_report(FLAGS.output_dir, images)}")


def pipeline(names, images, beam_args):
    """--runner: the attacks as an Apache Beam pipeline (`abs_tf.evaluation.beam_pipeline`,
    docs/beam.md); --beam_merge: only its merge step."""
    from abs_tf.evaluation import beam_pipeline

    if FLAGS.beam_merge:
        beam_pipeline.merge_shards(FLAGS.output_dir, images)
    else:
        if FLAGS.preset == "none" or FLAGS.attacks == ["none"]:
            raise app.UsageError("--runner runs attacks: add --preset=quick or --preset=table1")
        config = attack_config(images)
        described = {name: describe(name, config.batch_size) for name in names}
        beam_args = [f"--runner={FLAGS.runner}", *beam_args]
        try:
            beam_pipeline.check_pipeline(config, names, FLAGS.output_dir, beam_args)
            workload = beam_pipeline.registry_workload(
                names, weights=FLAGS.weights, substitute=FLAGS.substitute or None, data_dir=FLAGS.data_dir,
                options={n: model_options(registry.get_spec(n), config.batch_size) for n in names},
                traits={n: d[0] for n, d in described.items()}, model_settings={n: d[1] for n, d in described.items()})
        except ValueError as e:
            raise app.UsageError(str(e))
        unknown = beam_pipeline.unknown_options(beam_args)
        if unknown:   # a typo, or an option the runner reads itself (Beam passes those on)
            logging.warning("options neither evaluate.py nor Beam defines: --%s", ", --".join(unknown))
        beam_pipeline.run_pipeline(config, names, workload, FLAGS.output_dir, beam_args)
    print(f"wrote {FLAGS.output_dir.rstrip('/')}/report.md")


def parse_flags(argv):
    """absl's parsing; with --runner, the arguments absl does not know are Beam's options."""
    if not any(a == "--runner" or a.startswith("--runner=") for a in argv[1:]):
        return app.parse_flags_with_usage(argv)
    try:
        return FLAGS(argv, known_only=True)
    except flags.Error as e:
        sys.exit(f"FATAL Flags parsing error: {e}")


def main(argv):
    from abs_tf import data

    names = model_names()
    if FLAGS.weights and len(names) > 1:
        raise app.UsageError("--weights applies to one model; give --model=<name>")
    images, labels = data.load_mnist("test", FLAGS.data_dir)
    if FLAGS.runner or FLAGS.beam_merge:
        pipeline(names, images, argv[1:])
        return
    if FLAGS.merge:
        from abs_tf import evaluation

        evaluation.merge(FLAGS.merge, FLAGS.output_dir)
        print(f"wrote {evaluation.write_report(FLAGS.output_dir, images)}")
        return
    if FLAGS.preset == "none" or FLAGS.attacks == ["none"]:
        stop = FLAGS.start + FLAGS.num_images
        if stop > len(images):
            raise app.UsageError(f"--start + --num_images = {stop} exceeds the {len(images)} test images")
        import numpy as np

        clean(names, images[FLAGS.start:stop], labels[FLAGS.start:stop], np.arange(FLAGS.start, stop))
    else:
        attacks(names, images, labels)


if __name__ == "__main__":
    app.run(main, flags_parser=parse_flags)
