"""The evaluation as an Apache Beam pipeline and bulk classification with RunInference, on the
DirectRunner (2 worker threads): the same summary as a local run, retries without duplicate
records, finished shards skipped, predictions equal to the in-process model's. Into a local
directory and into a URL (``ram://``, TensorFlow's in-memory file system: one per process, so
the in-process runner modes only)."""

from __future__ import annotations

import dataclasses
import functools
import gzip
import json
import uuid
from pathlib import Path

import numpy as np
import pytest

# `make test` installs requirements-beam.txt, so these tests run there; a lean install skips them.
pytest.importorskip("apache_beam")
pytest.importorskip("tensorflow_hub")

from abs_tf.attacks.linear import linear_problem  # noqa: E402
from abs_tf.evaluation import beam_pipeline as bp, records as rec, remote  # noqa: E402
from abs_tf.evaluation.runner import RUNS_FILE, SUMMARY_FILE, run_evaluation  # noqa: E402
from abs_tf.evaluation.settings import EvaluationConfig  # noqa: E402

# As test_evaluation_runner: two cheap attacks, 6 images in batches of 2 (image 3 a clean error);
# two linear models, so that elements of different models are merged.
SMALL = dict(preset="quick", attacks=("fgsm", "deepfool_l2"), num_images=6, batch_size=2, determinism_images=0)
SEEDS = {"lin": 3, "lin4": 4}
DIRECT = ["--runner=DirectRunner", "--direct_num_workers=2", "--direct_running_mode=multi_threading"]


def _test_set():
    _, images, labels = linear_problem(seed=3, n=10)
    labels = labels.copy()
    labels[3] = (labels[3] + 1) % 10
    return images, labels


class FailOnce:
    """A model raising once, at its ``at``-th call, unless ``marker`` exists (it creates it): one
    fault in the whole pipeline whichever worker thread meets it."""

    def __init__(self, model, marker: str, at: int):
        self.model, self.marker, self.at, self.calls = model, Path(marker), at, 0

    def __call__(self, images):
        self.calls += 1
        if self.calls == self.at and not self.marker.exists():
            self.marker.write_text("raised")
            raise RuntimeError("injected fault (a pre-empted worker)")
        return self.model(images)


def _load(name, marker=None):
    model = linear_problem(seed=SEEDS[name], n=10)[0]
    return FailOnce(model, marker, at=6) if marker and name == "lin" else model


def _workload(marker=None):
    return bp.Workload(load_model=functools.partial(_load, marker=marker), load_test_set=_test_set)


@pytest.fixture(scope="module")
def local(tmp_path_factory):
    """The local run: both models, unsharded."""
    out = tmp_path_factory.mktemp("local")
    images, labels = _test_set()
    run_evaluation(EvaluationConfig(**SMALL), {n: _load(n) for n in SEEDS}, images, labels, out)
    return out


def _keys(directory):
    return [r.key for r in rec.read_records(directory)]


def _ram_url(tmp_path) -> str:
    return f"ram://{tmp_path.name}-{uuid.uuid4().hex[:8]}/t1"


@pytest.fixture(params=["local", "url"])
def out(request, tmp_path):
    """The pipeline's output_dir: a local directory, or a URL (ram://) that no worker mounts."""
    return tmp_path / "beam" if request.param == "local" else _ram_url(tmp_path)


def _readable(out, copy: Path) -> Path:
    """A local directory holding what is at ``out`` (``out`` itself when local)."""
    if not remote.is_url(out):
        return out
    assert remote.download_tree(out, copy) > 0
    return copy


def test_pipeline_summary_equals_the_local_run_and_finished_shards_are_skipped(local, out, tmp_path):
    target = out
    summary = bp.run_pipeline(EvaluationConfig(**SMALL, num_shards=2), tuple(SEEDS), _workload(), target, DIRECT)
    out = _readable(target, tmp_path / "first")
    assert (out / SUMMARY_FILE).read_bytes() == (local / SUMMARY_FILE).read_bytes()
    assert summary == json.loads((local / SUMMARY_FILE).read_text())
    assert sorted(_keys(out)) == sorted(_keys(local))
    shards = sorted(p.name for p in (out / bp.SHARDS_DIR).iterdir())
    assert shards == [f"{m}-{k:05d}-of-00002" for m in sorted(SEEDS) for k in range(2)]
    assert {r.index for r in rec.read_records(out / bp.SHARDS_DIR / shards[1])} == {4, 5}
    assert "| lin | 6 |" in (out / "report.md").read_text()
    assert all((out / bp.SHARDS_DIR / name / bp.DONE_FILE).is_file() for name in shards)
    sources = json.loads((out / "merged.json").read_text())["sources"]
    assert sources == [f"{target}/{bp.SHARDS_DIR}/{name}" for name in shards]     # not a scratch copy's path
    # a second run skips every finished shard (no new run in any shard) and merges again
    bp.run_pipeline(EvaluationConfig(**SMALL, num_shards=2), tuple(SEEDS), _workload(), target, DIRECT)
    out = _readable(target, tmp_path / "second")
    for name in shards:
        assert [r["status"] for r in rec.JsonlLog(out / bp.SHARDS_DIR / name / RUNS_FILE).read()] == ["finished"]
    assert (out / SUMMARY_FILE).read_bytes() == (local / SUMMARY_FILE).read_bytes()
    assert sorted(_keys(out)) == sorted(_keys(local))


def test_a_shard_that_raises_once_is_retried_without_duplicate_records(local, out, tmp_path):
    """At a URL the retry resumes from what the failed attempt uploaded (each attempt downloads)."""
    marker = tmp_path / "fault"
    bp.run_pipeline(EvaluationConfig(**SMALL, num_shards=2), tuple(SEEDS), _workload(str(marker)), out, DIRECT,
                    retries=1, retry_seconds=0)
    assert marker.exists()                                          # the fault happened
    out = _readable(out, tmp_path / "copy")
    statuses = {p.name: [r["status"] for r in rec.JsonlLog(p / RUNS_FILE).read()]
                for p in (out / bp.SHARDS_DIR).iterdir()}
    assert sorted(statuses.values()) == [["finished"]] * 3 + [["interrupted", "finished"]]
    retried = next(p for p, s in statuses.items() if len(s) == 2)
    assert retried.startswith("lin-")
    keys = _keys(out / bp.SHARDS_DIR / retried)
    assert len(keys) == len(set(keys))                              # resumed, nothing recorded twice
    assert sorted(_keys(out)) == sorted(_keys(local))
    assert (out / SUMMARY_FILE).read_bytes() == (local / SUMMARY_FILE).read_bytes()


def test_a_partial_upload_is_resumed_without_duplicate_records(local, tmp_path):
    """A shard directory at the URL without beam_done.json (a pre-empted worker's last upload)."""
    url, config = _ram_url(tmp_path), EvaluationConfig(**SMALL, num_shards=2)
    partial, images_labels = tmp_path / "partial", _test_set()
    with pytest.raises(RuntimeError, match="injected fault"):
        run_evaluation(dataclasses.replace(config, shard_index=0), {"lin": _load("lin", str(tmp_path / "fault"))},
                       *images_labels, partial, model_settings={"lin": {}})
    before = (partial / rec.RECORDS_FILE).read_bytes()
    assert before and len(before.splitlines()) < len(_keys(local)) / 2     # some, not all, of the shard's records
    assert remote.upload_tree(partial, bp.shard_dir(url, "lin", 0, 2)) > 0
    bp.run_pipeline(config, tuple(SEEDS), _workload(), url, DIRECT)
    out = _readable(url, tmp_path / "copy")
    shard = out / bp.SHARDS_DIR / "lin-00000-of-00002"
    assert (shard / rec.RECORDS_FILE).read_bytes().startswith(before)     # kept, then resumed
    assert [r["status"] for r in rec.JsonlLog(shard / RUNS_FILE).read()] == ["interrupted", "finished"]
    assert len(_keys(shard)) == len(set(_keys(shard)))
    assert sorted(_keys(out)) == sorted(_keys(local))
    assert (out / SUMMARY_FILE).read_bytes() == (local / SUMMARY_FILE).read_bytes()


def test_remote_copies_whole_visible_files_both_ways(tmp_path):
    import tensorflow as tf

    url, source = _ram_url(tmp_path), tmp_path / "source"
    (source / "adversarials" / "m").mkdir(parents=True)
    (source / "adversarials" / "m" / "0-1-ab.npz").write_bytes(b"npz")
    (source / rec.RECORDS_FILE).write_bytes(b'{"a": 1}\n')
    (source / ".lock").write_bytes(b"")                                 # hidden: never copied
    (source / "shards").mkdir()
    (source / "shards" / "x.json").write_bytes(b"{}")
    assert remote.upload_tree(source, url, exclude=("shards",)) == 2
    assert sorted(tf.io.gfile.listdir(url)) == ["adversarials", rec.RECORDS_FILE]   # no temporary name left
    assert remote.download_tree(url, tmp_path / "back") == 2
    assert (tmp_path / "back" / "adversarials" / "m" / "0-1-ab.npz").read_bytes() == b"npz"
    assert (tmp_path / "back" / rec.RECORDS_FILE).read_bytes() == b'{"a": 1}\n'
    assert remote.download_tree(url + "/nothing", tmp_path / "none") == 0


def test_the_pipeline_refuses_what_it_cannot_do_before_any_work(local, tmp_path):
    config = EvaluationConfig(**SMALL, num_shards=2)
    with pytest.raises(ValueError, match=r"no file system for scheme 'nosuch://'.*gs:// needs"):
        bp.run_pipeline(config, ("lin",), _workload(), "nosuch://bucket/table1", DIRECT)
    url = _ram_url(tmp_path)
    with pytest.raises(ValueError, match=f"{url} holds no pipeline run"):
        bp.merge_shards(url)
    with pytest.raises(ValueError, match=r"leaves 1 shard\(s\) without images.*without an empty shard is 3"):
        bp.run_pipeline(EvaluationConfig(**SMALL, num_shards=4), ("lin",), _workload(), tmp_path / "x", DIRECT)
    with pytest.raises(ValueError, match="records of a local run"):
        bp.run_pipeline(config, ("lin",), _workload(), local, DIRECT)
    assert not (tmp_path / "x").exists()
    typo = ["--runner=DirectRunner", "--direct_num_worker=2", "--project=p"]
    assert bp.unknown_options(typo) == ["direct_num_worker"]              # named in the driver's warning


# --- bulk classification -------------------------------------------------------------------

def _idx_gz(path, pixels):
    header = (2051).to_bytes(4, "big") + b"".join(d.to_bytes(4, "big") for d in pixels.shape)
    path.write_bytes(gzip.compress(header + pixels.tobytes()))


def test_bulk_classification_equals_in_process_predictions(mnist_test_small, tmp_path):
    from abs_tf import registry
    from abs_tf.evaluation import classify
    from abs_tf.export.savedmodel import export_model

    model = registry.load_model("cnn")
    exported = export_model(model, registry.get_spec("cnn"), "cnn", tmp_path / "exports")
    images = mnist_test_small[0][:20]
    pixels = np.round(images[..., 0] * 255).astype(np.uint8)
    inputs = tmp_path / "in"
    inputs.mkdir()
    np.save(inputs / "a.npy", images[:8])                               # float [N,28,28,1]
    np.save(inputs / "b.npy", pixels[8:14])                             # uint8 [N,28,28]
    _idx_gz(inputs / "c-idx3-ubyte.gz", pixels[14:])                    # MNIST IDX
    written = classify.classify_files(str(exported), [str(inputs / "*.npy"), str(inputs / "*.gz")],
                                      str(tmp_path / "out" / "pred"), batch_size=4, pipeline_args=DIRECT)
    got = classify.read_predictions(written)
    assert [Path(f).name for f in got["file"]] == ["a.npy"] * 8 + ["b.npy"] * 6 + ["c-idx3-ubyte.gz"] * 6
    assert got["index"].tolist() == list(range(8)) + list(range(6)) + list(range(6))
    logits = np.asarray(model(images))
    np.testing.assert_allclose(got["logits"], logits, atol=1e-4)
    np.testing.assert_allclose(got["probabilities"], np.asarray(registry.get_spec("cnn").probabilities(logits)),
                               atol=1e-5)
    np.testing.assert_array_equal(got["class"], logits.argmax(1))
    assert "losses" not in got                                          # a CNN export has no explain signature
    with pytest.raises(ValueError, match="must be \\[N, 28, 28, 1\\] or \\[N, 28, 28\\], got \\[2, 28, 28, 3\\]"):
        classify.read_images("bad.npy", _npy(np.zeros([2, 28, 28, 3], np.float32)))
    with pytest.raises(ValueError, match="no signature 'explain'"):
        classify.classify_files(str(exported), [str(inputs / "a.npy")], str(tmp_path / "x"), signature="explain")


def _npy(array) -> bytes:
    import io

    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()


def test_bulk_classification_of_an_abs_export_gives_its_class_losses(mnist_test_small, tmp_path):
    from abs_tf import registry
    from abs_tf.evaluation import classify
    from abs_tf.export.savedmodel import export_model

    spec = registry.get_spec("abs")
    model = registry.load_model("abs", n_samples=60, n_steps=3, **spec.export_options)   # a small search
    exported = export_model(model, spec, "abs", tmp_path / "exports")
    images = mnist_test_small[0][:6]
    np.save(tmp_path / "x.npy", images)
    written = classify.classify_files(str(exported), str(tmp_path / "x.npy"), str(tmp_path / "pred"), batch_size=4,
                                      pipeline_args=["--runner=DirectRunner"])
    got = classify.read_predictions(written)
    search = model.search(images)
    np.testing.assert_allclose(got["losses"], search["losses"].numpy(), rtol=1e-5, atol=1e-5)
    logits = np.asarray(model(images))
    np.testing.assert_allclose(got["logits"], logits, atol=1e-5)
    np.testing.assert_allclose(got["probabilities"], np.asarray(spec.probabilities(logits)), atol=1e-5)
    np.testing.assert_array_equal(got["class"], got["losses"].argmin(1))     # the best-explaining class
    assert got["certified_l2"].shape == (6,) and np.all(got["certified_l2"] >= 0)


def test_evaluate_py_runs_the_pipeline_and_merges_again(repo_root, mnist_dir, tmp_path):
    """The driver: --runner with Beam's own options passed through, then --beam_merge alone."""
    import os
    import subprocess
    import sys

    def run(args):
        return subprocess.run([sys.executable, str(repo_root / "evaluate.py"), *args], capture_output=True, text=True,
                              timeout=600, env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"))

    out = tmp_path / "beam"
    proc = run(["--model=cnn", "--preset=quick", "--attacks=fgsm", "--num_images=4", "--batch_size=2",
                "--num_shards=2", "--substitute=", "--determinism_images=0", f"--data_dir={mnist_dir}",
                f"--output_dir={out}", "--runner=DirectRunner", "--direct_num_workers=2",
                "--direct_running_mode=multi_threading"])
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert sorted(p.name for p in (out / bp.SHARDS_DIR).iterdir()) == ["cnn-00000-of-00002", "cnn-00001-of-00002"]
    assert sorted(r.index for r in rec.read_records(out)) == [0, 1, 2, 3]
    summary = (out / SUMMARY_FILE).read_text()
    (out / SUMMARY_FILE).unlink()
    (out / "report.md").unlink()
    merged = run(["--beam_merge", f"--data_dir={mnist_dir}", f"--output_dir={out}"])
    assert merged.returncode == 0, merged.stderr[-3000:]
    assert (out / SUMMARY_FILE).read_text() == summary and (out / "report.md").is_file()
