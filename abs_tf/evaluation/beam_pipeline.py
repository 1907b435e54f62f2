"""The evaluation as an Apache Beam pipeline: the records of `run_evaluation`, computed on any
Beam runner (the DirectRunner on one machine; Dataflow, Flink or Spark on a cluster) and merged
into the layout, summary and report of a local run.

    workload = registry_workload(("cnn", "abs"))
    summary = run_pipeline(EvaluationConfig(preset="table1", num_images=10000, num_shards=64),
                           ("cnn", "abs"), workload, "/mnt/shared/table1",
                           ["--runner=DirectRunner", "--direct_num_workers=2"])

Elements: one per (model, shard) of ``config``; its preset (or attack subset) is every element's
attack set. An element runs `run_evaluation` on that model and block of images
(`settings.select_indices`) into ``<output_dir>/shards/<model>-<i>-of-<n>/``, so every element
writes the verified records of the local evaluation, each into its own directory. A finished
element leaves ``beam_done.json`` there and is skipped when the pipeline runs again; an
unfinished one resumes from its records, so a failed, retried or pre-empted element loses at most
the batch in flight and never records an image twice. A failing element is retried inside the
worker (``retries``; the DirectRunner itself never retries) before the runner's own retries, but
not for errors a retry cannot cure (`PERMANENT`: settings that differ, tampered records). Models
are loaded once per worker process, when its first element needs them (`apache_beam.utils.shared`:
the worker's threads share them). The last step merges the shard directories into a staging
directory (`merge`), moves the result into ``output_dir`` and writes report.md (`merge_shards`,
also callable alone, e.g. after a run whose merge step failed).

Storage: ``output_dir`` is a local directory that every worker and the merge step can write (a
local disk for the DirectRunner; a POSIX file system mounted on every worker on a cluster:
records are appended with fsync and each directory is locked with flock), or a URL of any scheme
``tf.io.gfile`` knows (gs://; ram:// in the tests), for workers that share no file system
(Dataflow). Then each attempt at an element works in a local scratch directory under the
worker's temp dir: it downloads what earlier attempts uploaded of its shard directory (to resume
from its records), runs `run_evaluation` there and uploads the directory file by file (`remote`),
after a failure too, and writes ``beam_done.json`` at the URL last. The merge step downloads the
shard directories, merges them and writes the report in a local directory, and uploads the result.
Nothing locks a URL: two attempts at one element at once (which batch runners do not start) would
both upload.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import json
import os
import shutil
import tempfile
import threading
import time
from pathlib import Path
from typing import Callable, Mapping, Optional

try:
    import apache_beam as beam
    from apache_beam.metrics import Metrics
    from apache_beam.options.pipeline_options import PipelineOptions
    from apache_beam.utils import shared
except ImportError as e:  # the optional dependency (requirements-beam.txt)
    raise ImportError("abs_tf.evaluation.beam_pipeline needs Apache Beam: pip install -r requirements-beam.txt") from e

from abs_tf import data, registry
from abs_tf.evaluation import remote
from abs_tf.evaluation.merge import MERGED_FILE, merge
from abs_tf.evaluation.records import RECORDS_FILE, check_name, write_atomic
from abs_tf.evaluation.report import write_report
from abs_tf.evaluation.runner import SUMMARY_FILE, run_evaluation
from abs_tf.evaluation.settings import SETTINGS_FILE, EvaluationConfig, ensure_writable, select_indices

SHARDS_DIR = "shards"
DONE_FILE = "beam_done.json"
PIPELINE_FILE = "beam.json"
STAGING_DIR = ".merging"
# What decides the shards and their records: a later pipeline into the same output_dir must agree.
PIPELINE_KEYS = ("preset", "start", "num_images", "batch_size", "seed", "num_shards")
# Errors a retry cannot cure (bad settings, tampered records are ValueErrors): the element fails at once.
PERMANENT = (ValueError, TypeError, KeyError, PermissionError, NotImplementedError)


@dataclasses.dataclass(frozen=True)
class Workload:
    """What each worker loads once; picklable (Beam ships it to the workers).

    load_model: ``name -> model`` (images float32 [B,28,28,1] in [0,1] -> logits [B,10]).
    load_test_set: ``() -> (images float32 [T,28,28,1] in [0,1], labels int64 [T])``.
    load_substitute: ``() -> model``, the transfer attacks' substitute; None: they are skipped.
    traits: {name: `presets.ModelTraits`} (default: `presets.traits_of` the model).
    model_settings: {name: JSON-able dict} kept in settings.json (weights, options).
    """

    load_model: Callable
    load_test_set: Callable
    load_substitute: Optional[Callable] = None
    traits: Mapping = dataclasses.field(default_factory=dict)
    model_settings: Mapping = dataclasses.field(default_factory=dict)


def _load_registered(name: str, weights, options: Mapping):
    return registry.load_model(name, weights, **dict(options.get(name, {})))


def registry_workload(names, *, weights=None, options: Optional[Mapping] = None, substitute: Optional[str] = None,
                      data_dir=None, traits: Optional[Mapping] = None,
                      model_settings: Optional[Mapping] = None) -> Workload:
    """A `Workload` of registered models (`abs_tf.registry`) on the MNIST test set.

    weights: one model's weights directory (None: each model's default, found on the worker).
    options: {name: load_model options}. substitute: a registered name or None. data_dir: the
    MNIST directory on the workers (None: their $ABS_TF_DATA_DIR). traits, model_settings: as
    `Workload` (the driver passes what it records locally, so both runs write the same settings).
    """
    names = tuple(names)
    if weights is not None and len(names) != 1:
        raise ValueError(f"weights applies to one model; got {len(names)} models")
    for name in names + ((substitute,) if substitute else ()):
        registry.get_spec(name)                                   # KeyError naming the registered models
    options = {n: dict((options or {}).get(n, {})) for n in names}
    return Workload(load_model=functools.partial(_load_registered, weights=weights, options=options),
                    load_test_set=functools.partial(data.load_mnist, "test", data_dir),
                    load_substitute=functools.partial(registry.load_model, substitute) if substitute else None,
                    traits=dict(traits or {}), model_settings=dict(model_settings or {}))


def _join(root, *parts):
    """``root/parts``: a Path for a local root, a str for a URL."""
    return remote.join(root, *parts) if remote.is_url(root) else Path(root).joinpath(*parts)


def _read_json(path):
    """The JSON object in the file ``path`` (local or URL); None if there is none."""
    return json.loads(remote.read_bytes(path)) if remote.exists(path) else None


def _write_json(path, value) -> None:
    data = json.dumps(value, indent=2, sort_keys=True).encode()
    remote.write_bytes(path, data) if remote.is_url(path) else write_atomic(Path(path), data)


def shard_dir(output_dir, model: str, shard_index: int, num_shards: int):
    """<output_dir>/shards/<model>-<i>-of-<n>: one element's evaluation directory (a Path; a str
    for a URL ``output_dir``)."""
    return _join(output_dir, SHARDS_DIR, f"{check_name(model, 'model')}-{shard_index:05d}-of-{num_shards:05d}")


@contextlib.contextmanager
def _scratch(directory):
    """The local directory an attempt at an element writes: ``directory`` itself when local; for a
    URL a scratch copy under the worker's temp dir, downloaded first (the records of earlier
    attempts) and uploaded afterwards, after a failure too (its records are kept)."""
    if not remote.is_url(directory):
        yield Path(directory)
        return
    with tempfile.TemporaryDirectory(prefix="abs_tf_shard_") as scratch:
        local = Path(scratch) / "shard"
        remote.download_tree(directory, local)
        try:
            yield local
        finally:
            remote.upload_tree(local, directory)


def new_pipeline(options: PipelineOptions) -> "beam.Pipeline":
    """A pipeline for ``options``. The DirectRunner is run as its in-process engine (the
    FnApiRunner, which honours --direct_num_workers / --direct_running_mode): Beam 2.77's
    DirectRunner would first try to download its Prism runner binary from GitHub, and nothing
    here may reach the network at run time."""
    from apache_beam.options.pipeline_options import StandardOptions

    if options.view_as(StandardOptions).runner in (None, "DirectRunner"):
        from apache_beam.runners.portability.fn_api_runner import FnApiRunner

        return beam.Pipeline(runner=FnApiRunner(), options=options)
    return beam.Pipeline(options=options)


def pipeline_options(args) -> PipelineOptions:
    """Beam's options from command-line style ``args`` (``--runner=...``; default DirectRunner)."""
    return PipelineOptions([str(a) for a in args])


def unknown_options(args) -> list:
    """Names in ``args`` that no Beam options class defines: typos, or options a runner reads
    by itself (Flink's --parallelism), which Beam passes on; drivers warn about them."""
    options = pipeline_options(args)
    return sorted(set(options.get_all_options(retain_unknown_options=True)) - set(options.get_all_options()))


def _empty_shards(config: EvaluationConfig, num_shards: int) -> int:
    stop = config.start + config.num_images
    last = dataclasses.replace(config, shard_index=num_shards - 1, num_shards=num_shards)
    per_shard = len(select_indices(dataclasses.replace(last, shard_index=0), stop))
    return num_shards - -(-config.num_images // per_shard) if select_indices(last, stop).size == 0 else 0


def _shards(config: EvaluationConfig) -> list:
    """Shard indices of ``config``; ValueError if a shard would hold no image."""
    empty = _empty_shards(config, config.num_shards)
    if empty:
        largest = next(s for s in range(config.num_shards, 0, -1) if not _empty_shards(config, s))
        per_shard = len(select_indices(config, config.start + config.num_images))
        raise ValueError(f"num_shards={config.num_shards} leaves {empty} shard(s) without images (shards hold "
                         f"whole batches: {per_shard} images each at batch_size {config.batch_size}); the largest "
                         f"num_shards below it without an empty shard is {largest}")
    return list(range(config.num_shards))


def _pipeline_record(config: EvaluationConfig, models) -> dict:
    return {"config": {k: getattr(config, k) for k in PIPELINE_KEYS}, "models": sorted(models)}


def _adopt(root, config: EvaluationConfig, models) -> None:
    """Stores what this pipeline writes in ``root`` (a directory or URL); refuses a root of other
    settings or of a local run."""
    path = _join(root, PIPELINE_FILE)
    new = _pipeline_record(config, models)
    stored = _read_json(path)
    if stored is not None:
        differing = [f"{k} ({stored['config'].get(k)!r} stored, {v!r} now)" for k, v in new["config"].items()
                     if stored["config"].get(k) != v]
        if differing:
            raise ValueError(f"{root} holds a pipeline of other settings; use another output_dir or the same "
                             "settings. Differing: " + "; ".join(differing))
        new["models"] = sorted(set(stored["models"]) | set(models))
    elif remote.exists(_join(root, RECORDS_FILE)):
        raise ValueError(f"{root} holds the records of a local run; give the pipeline its own output_dir")
    _write_json(path, new)


class _Worker:
    """One worker process's test set, substitute and models, shared by its threads (loaded lazily,
    each once). A class, not a dict: `shared.Shared` keeps weak references."""

    def __init__(self, workload: Workload):
        self.workload = workload
        self.images, self.labels = workload.load_test_set()
        self.substitute = workload.load_substitute() if workload.load_substitute else None
        self._models, self._lock = {}, threading.Lock()

    def model(self, name: str):
        with self._lock:
            if name not in self._models:
                self._models[name] = self.workload.load_model(name)
            return self._models[name]


class EvaluateShard(beam.DoFn):
    """(model, shard_index) -> the shard's directory (str) once its records are complete (module
    doc). retries: attempts after the first; retry_seconds: the wait before the first retry
    (doubling; a duplicate of the element still holding the directory's lock has time to finish)."""

    def __init__(self, config: EvaluationConfig, workload: Workload, output_dir: str, handle, *, retries: int = 2,
                 retry_seconds: float = 5.0):
        self.config, self.workload, self.output_dir, self.handle = config, workload, output_dir, handle
        self.retries, self.retry_seconds = retries, retry_seconds
        self.retried = Metrics.counter("abs_tf", "shard_retries")
        self.skipped = Metrics.counter("abs_tf", "shards_already_done")
        self._worker = None

    def setup(self):
        self._worker = self.handle.acquire(functools.partial(_Worker, self.workload))

    def process(self, element):
        name, index = element
        config = dataclasses.replace(self.config, shard_index=int(index))
        directory = shard_dir(self.output_dir, name, config.shard_index, config.num_shards)
        marker = {"model": name, "config": {k: v for k, v in dataclasses.asdict(config).items() if k != "command"}}
        marker = json.loads(json.dumps(marker))                 # as stored (tuples become lists)
        done = _join(directory, DONE_FILE)
        for attempt in range(self.retries + 1):
            if _read_json(done) == marker:
                self.skipped.inc()                              # finished earlier (or by a duplicate)
                break
            try:   # resumes from the records of an earlier attempt: nothing is redone or recorded twice
                with _scratch(directory) as local:
                    self._run(name, config, local)
            except PERMANENT:
                raise
            except Exception:
                if attempt == self.retries:
                    raise
                self.retried.inc()
                time.sleep(self.retry_seconds * 2 ** attempt)
                continue
            _write_json(done, marker)                           # last: after the upload
            break
        yield str(directory)

    def _run(self, name, config, directory):
        worker, traits = self._worker, self.workload.traits
        run_evaluation(config, {name: worker.model(name)}, worker.images, worker.labels, directory,
                       substitute=worker.substitute, traits={name: traits[name]} if name in traits else None,
                       model_settings={name: dict(self.workload.model_settings.get(name, {}))})


def merge_shards(output_dir, images=None, shards=None) -> dict:
    """Merges the shard directories (default: every one under <output_dir>/shards) into
    ``output_dir`` and writes its report (``images``: the test set for the galleries, as
    `write_report`); returns the merged summary. A later merge replaces the earlier one (at a URL:
    its files are overwritten). A URL ``output_dir`` is merged in a local scratch directory."""
    if remote.is_url(output_dir):
        return _merge_url(remote.check_url(output_dir), images, shards)
    root = Path(output_dir)
    if not (root / PIPELINE_FILE).exists():
        raise ValueError(f"{root} holds no pipeline run ({PIPELINE_FILE} missing); merge local runs with "
                         "abs_tf.evaluation.merge")
    if shards is None:
        base = root / SHARDS_DIR
        shards = sorted(p for p in base.iterdir() if (p / SETTINGS_FILE).exists()) if base.is_dir() else []
    if not shards:
        raise ValueError(f"{root / SHARDS_DIR} holds no shard directory to merge")
    staging = root / STAGING_DIR
    if staging.exists():
        shutil.rmtree(staging)                                  # left by an interrupted merge
    merge(sorted(Path(s) for s in shards), staging)
    for entry in sorted(staging.iterdir()):
        if entry.name.startswith("."):                          # the lock file
            continue
        target = root / entry.name
        if target.is_dir():
            shutil.rmtree(target)
        os.replace(entry, target)
    shutil.rmtree(staging)
    write_report(root, images)
    return json.loads((root / SUMMARY_FILE).read_text())


def _merge_url(url: str, images, shards) -> dict:
    """`merge_shards` for a URL: downloads beam.json and the shard directories, merges them in a
    local scratch directory and uploads everything but the shards (already there)."""
    with tempfile.TemporaryDirectory(prefix="abs_tf_merge_") as scratch:
        local = Path(scratch) / "out"
        local.mkdir()
        if remote.exists(remote.join(url, PIPELINE_FILE)):
            write_atomic(local / PIPELINE_FILE, remote.read_bytes(remote.join(url, PIPELINE_FILE)))
        if shards is None:
            remote.download_tree(remote.join(url, SHARDS_DIR), local / SHARDS_DIR)
        else:
            copies = [local / SHARDS_DIR / str(s).rstrip("/").rsplit("/", 1)[-1] for s in shards]
            shards = [c for s, c in zip(shards, copies) if remote.download_tree(s, c)]
        try:
            summary = merge_shards(local, images, shards)
        except ValueError as e:                                 # naming the URL, not the scratch copy
            raise ValueError(str(e).replace(str(local), url)) from None
        merged = json.loads((local / MERGED_FILE).read_text())  # the URL's shards, not the scratch copies
        merged["sources"] = [s.replace(str(local), url, 1) for s in merged["sources"]]
        write_atomic(local / MERGED_FILE, json.dumps(merged, indent=2).encode())
        remote.upload_tree(local, url, exclude=(SHARDS_DIR,))
    return summary


def _merge_step(directories, output_dir: str, workload: Workload) -> str:
    """After every element (``directories``: their outputs, the barrier): merges all shards of
    output_dir, those of models evaluated by earlier pipelines into it included."""
    del directories
    images, _ = workload.load_test_set()
    merge_shards(output_dir, images)
    return output_dir


def check_pipeline(config: EvaluationConfig, models, output_dir, pipeline_args=()) -> tuple:
    """What `run_pipeline` checks before any work (ValueError naming the problem); returns
    (shard indices, `PipelineOptions`). Drivers call it to refuse bad flags before loading."""
    models = tuple(models)
    if not models:
        raise ValueError("models: give at least one model name")
    for name in models:
        check_name(name, "model")
    if remote.is_url(output_dir):
        remote.check_url(output_dir)                        # a scheme tf.io.gfile knows
    if config.shard_index != 0:
        raise ValueError(f"shard_index={config.shard_index}: the pipeline runs every shard; give shard_index=0")
    return _shards(config), pipeline_options(pipeline_args)


def run_pipeline(config: EvaluationConfig, models, workload: Workload, output_dir, pipeline_args=(), *,
                 retries: int = 2, retry_seconds: float = 5.0) -> dict:
    """Evaluates ``models`` (names ``workload`` loads) with ``config`` as a Beam pipeline into
    ``output_dir`` (module doc) and returns the merged summary, as `run_evaluation` would.

    config.num_shards: shards per model (elements: models x shards); config.shard_index must be 0.
    pipeline_args: Beam's options, e.g. ["--runner=FlinkRunner", "--flink_master=host:8081"].
    retries, retry_seconds: attempts after the first, per element, inside the worker, and the wait
      before the first retry (doubling).
    output_dir: a local directory or a URL (module doc: Storage).
    Raises: ValueError (`check_pipeline`; other settings in output_dir), PermissionError
      (output_dir not writable), and what an element raised after its retries.
    """
    if retries < 0:
        raise ValueError(f"retries must be >= 0, got {retries}")
    models = tuple(models)
    shards, options = check_pipeline(config, models, output_dir, pipeline_args)
    root = remote.ensure_writable(output_dir) if remote.is_url(output_dir) else ensure_writable(output_dir).resolve()
    _adopt(root, config, models)
    pipeline = new_pipeline(options)
    _ = (pipeline
         | "Elements" >> beam.Create([(m, k) for m in models for k in shards])
         | "Spread" >> beam.Reshuffle()              # one element per worker, not one fused bundle
         | "Evaluate" >> beam.ParDo(EvaluateShard(config, workload, str(root), shared.Shared(), retries=retries,
                                                 retry_seconds=retry_seconds))
         | "Collect" >> beam.combiners.ToList()
         | "Merge" >> beam.Map(_merge_step, str(root), workload))
    pipeline.run().wait_until_finish()
    return _read_json(_join(root, SUMMARY_FILE))
