"""Evaluation directories at URLs (``gs://``, ``s3://`` with a plugin, ``ram://``: any scheme
``tf.io.gfile`` knows), for workers that share no file system (`beam_pipeline`): they evaluate
in a local directory and copy it from and to the URL with these helpers.

    remote.download_tree("gs://bucket/t1/shards/cnn-00000-of-00002", "/tmp/shard")
    ...                                             # run_evaluation into /tmp/shard
    remote.upload_tree("/tmp/shard", "gs://bucket/t1/shards/cnn-00000-of-00002")

A file is written whole: it is copied to a hidden temporary name beside its target, then
renamed over it, so a reader sees the old file or the new one, never half of one. Hidden names
(a leading '.': locks, write probes, temporary copies a killed upload left) are never copied.
Append-only logs (``*.jsonl``: records, clean records, runs) are uploaded after every other file
and downloaded before them, so a record's adversarial file (written before the record locally,
`records`) is at the URL, and in a download, whenever the record is. Directories are created
explicitly (``makedirs``): some file systems (``ram://``) list only those.
Only ``tf.io.gfile``; nothing here touches the network until called.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import tensorflow as tf

LOGS_SUFFIX = ".jsonl"


def is_url(path) -> bool:
    """Whether ``path`` is a URL (``scheme://...``) rather than a local path."""
    return "://" in str(path)


def join(url: str, *parts: str) -> str:
    """``url/part/part``, one '/' between each (``os.path.join`` keeps a URL's own '//')."""
    return "/".join([str(url).rstrip("/"), *(p.strip("/") for p in parts)])


def check_url(url: str) -> str:
    """``url`` without a trailing '/'; ValueError if ``tf.io.gfile`` has no file system for its scheme."""
    scheme = str(url).split("://", 1)[0]
    known = sorted(s for s in tf.io.gfile.get_registered_schemes() if s)
    if scheme not in known:
        raise ValueError(
            f"output_dir {url}: tf.io.gfile has no file system for scheme '{scheme}://' (it knows "
            f"{', '.join(s + '://' for s in known)}); gs:// needs TensorFlow's Cloud Storage support, which "
            "TensorFlow 2.21 has built in; other schemes (s3://, hdfs://) need a plugin that registers them, "
            "such as tensorflow-io, imported on every worker")
    return str(url).rstrip("/")


def exists(path) -> bool:
    """Whether a file or directory exists at ``path`` (a URL or a local path)."""
    return tf.io.gfile.exists(str(path))


def read_bytes(path) -> bytes:
    """The bytes of the file at ``path`` (a URL or a local path)."""
    with tf.io.gfile.GFile(str(path), "rb") as f:
        return f.read()


def _temporary(target: str) -> str:
    head, name = target.rsplit("/", 1)
    return f"{head}/.{name}.upload-{os.getpid()}-{uuid.uuid4().hex[:8]}"


def write_bytes(url: str, data: bytes) -> None:
    """Writes ``data`` to the file ``url`` whole (a temporary name, then renamed over it)."""
    tmp = _temporary(url)
    with tf.io.gfile.GFile(tmp, "wb") as f:
        f.write(data)
    tf.io.gfile.rename(tmp, url, overwrite=True)


def ensure_writable(url: str) -> str:
    """Creates the directory ``url`` and proves it writable (a probe file, then removed), before
    any work; returns ``url`` without a trailing '/'. PermissionError naming the URL otherwise."""
    url = check_url(url)
    probe = join(url, f".write_probe{os.getpid()}")
    try:
        tf.io.gfile.makedirs(url)
        write_bytes(probe, b"ok")
        tf.io.gfile.remove(probe)
    except tf.errors.OpError as e:
        raise PermissionError(f"output_dir {url} is not writable: {e.message}") from e
    return url


def _ordered(files: list) -> list:
    """Relative paths, the append-only logs last (module doc)."""
    return sorted(files, key=lambda rel: (rel.endswith(LOGS_SUFFIX), rel))


def upload_tree(local_dir, url: str, *, exclude=()) -> int:
    """Copies the files under ``local_dir`` to the same relative paths under ``url``, each whole,
    the logs last (module doc), replacing files already there; returns how many. ``exclude``:
    top-level names not copied. A missing ``local_dir`` copies nothing."""
    local_dir = Path(local_dir)
    if not local_dir.is_dir():
        return 0
    files = []
    for dirpath, dirnames, filenames in os.walk(local_dir):
        rel_dir = Path(dirpath).relative_to(local_dir).as_posix()
        top = rel_dir == "."
        dirnames[:] = sorted(d for d in dirnames if not d.startswith(".") and not (top and d in exclude))
        tf.io.gfile.makedirs(url if top else join(url, rel_dir))
        files += [name if top else f"{rel_dir}/{name}" for name in filenames
                  if not name.startswith(".") and not (top and name in exclude)]
    for rel in _ordered(files):
        target = join(url, rel)
        tmp = _temporary(target)
        tf.io.gfile.copy(str(local_dir / rel), tmp, overwrite=True)
        tf.io.gfile.rename(tmp, target, overwrite=True)
    return len(files)


def _remote_files(url: str, rel: str = "") -> list:
    """Relative paths of the visible files under ``url``. By glob, not ``tf.io.gfile.walk``: TF
    2.21's ram:// lists ``<dir>/lin`` with the entries of its sibling ``<dir>/lin4`` (a prefix
    match), and glob matches whole names."""
    files = []
    for path in sorted(tf.io.gfile.glob(join(url, rel, "*") if rel else join(url, "*"))):
        name = path.rstrip("/").rsplit("/", 1)[-1]
        if name.startswith("."):
            continue
        child = f"{rel}/{name}" if rel else name
        files += _remote_files(url, child) if tf.io.gfile.isdir(path) else [child]
    return files


def download_tree(url: str, local_dir) -> int:
    """Copies the files under ``url`` to the same relative paths under ``local_dir`` (created),
    the logs first (module doc); returns how many (0 when nothing is at ``url``)."""
    url = str(url).rstrip("/")
    if not tf.io.gfile.exists(url):
        return 0
    local_dir = Path(local_dir)
    logs = [rel for rel in _remote_files(url) if rel.endswith(LOGS_SUFFIX)]
    # listed again after the logs are copied: the files their records name were uploaded before them
    rest = [rel for rel in _remote_files(url) if not rel.endswith(LOGS_SUFFIX)]
    for rel in logs + sorted(rest):
        target = local_dir / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        tf.io.gfile.copy(join(url, rel), str(target), overwrite=True)
    return len(logs) + len(rest)
