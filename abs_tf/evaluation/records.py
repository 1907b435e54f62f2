"""One verified record per (model, attack, image), stored so that a kill loses nothing and
anyone can re-check it.

Layout inside an evaluation's output directory:

* ``records.jsonl``: one JSON object per line (`Record`), appended per batch with one
  ``write`` + flush + fsync. A truncated last line (a kill mid-write) is dropped on reading
  and cut off before the next append; a corrupt line elsewhere is an error naming the line.
* ``clean.jsonl``: one `CleanRecord` per (model, image): the clean prediction (and, for ABS,
  the certified-L2 estimate), written the same way.
* ``adversarials/<model>/<attack>/<first>-<last>-<hash>.npz``: per batch, the verified
  adversarials of the batch's successful records (``indices`` int64 [n], ``labels`` int64
  [n], ``adversarials`` float32 [n, 28, 28, 1]), written atomically before the batch's records. Clean errors are
  stored too (their adversarial is the original image). The rows of one shard were verified
  together in one model call, and `recheck` verifies them again in the same call layout, so
  the model's float round-off cannot flip a borderline image between the two.

Distances are in pixel units (`abs_tf.attacks.verify`): 0 for images the model already gets
wrong, +inf where the attack found no adversarial (``null`` in JSON).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import re
from pathlib import Path
from typing import Iterable, Optional

import numpy as np

from abs_tf.attacks.verify import NORMS

RECORDS_FILE = "records.jsonl"
CLEAN_FILE = "clean.jsonl"
ADVERSARIALS_DIR = "adversarials"
_SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


def check_name(name: str, what: str) -> str:
    """A model or attack name usable as a path component (letters, digits, _ . -)."""
    if not isinstance(name, str) or not _SAFE_NAME.match(name):
        raise ValueError(f"{what} name {name!r} must be letters, digits, '_', '.' or '-' (it names files)")
    return name


def image_sha256(image) -> str:
    """Short hash of one image's float32 bytes (what a record's adversarial must hash to)."""
    return hashlib.sha256(np.ascontiguousarray(np.asarray(image, np.float32)).tobytes()).hexdigest()[:16]


def _to_json_float(value: float):
    value = float(value)
    return None if math.isinf(value) and value > 0 else value


def _from_json_float(value) -> float:
    return math.inf if value is None else float(value)


@dataclasses.dataclass(frozen=True)
class Record:
    """The verified outcome of one attack on one image of one model.

    model, attack: names (the attack's name in the preset). index: test-set index; label: true
    class. clean_prediction: the model's class for the clean image. prediction: its class for
    the kept adversarial (the clean class where none). success: a verified adversarial exists
    (True for clean errors). distances: {"l0", "l1", "l2", "linf"} of the verified
    adversarial (0 for clean errors, inf without one). norm: the attack's norm; counts_for:
    the norms in which the protocol counts this record. no_gradient: no adversarial and the
    attack never had a usable gradient (failed; not robust). budget_exhausted: no adversarial
    and the query budget ran out. forward_queries, gradient_queries, queries: per image
    (queries = forward-query equivalents). seconds: the image's share of its batch's wall
    time. seed: the attack call's seed. attack_repr: the attack's repr (hyper-parameters).
    adversarial_file: shard path relative to the output directory (None without adversarial);
    adversarial_sha256: `image_sha256` of the stored adversarial.
    """

    model: str
    attack: str
    index: int
    label: int
    clean_prediction: int
    prediction: int
    success: bool
    distances: dict
    norm: str
    counts_for: tuple
    no_gradient: bool
    budget_exhausted: bool
    forward_queries: float
    gradient_queries: float
    queries: float
    seconds: float
    seed: int
    attack_repr: str
    adversarial_file: Optional[str] = None
    adversarial_sha256: Optional[str] = None

    @property
    def key(self) -> tuple:
        return (self.model, self.attack, self.index)

    @property
    def clean_error(self) -> bool:
        return self.clean_prediction != self.label

    def to_json(self) -> dict:
        out = dataclasses.asdict(self)
        out["distances"] = {n: _to_json_float(self.distances[n]) for n in NORMS}
        out["counts_for"] = list(self.counts_for)
        return out

    @classmethod
    def from_json(cls, row: dict) -> "Record":
        fields = {f.name for f in dataclasses.fields(cls)}
        missing = sorted(fields - set(row) - {"adversarial_file", "adversarial_sha256"})
        if missing:
            raise ValueError(f"record lacks the field(s) {', '.join(missing)}")
        row = {k: v for k, v in row.items() if k in fields}
        row["distances"] = {n: _from_json_float(row["distances"].get(n)) for n in NORMS}
        row["counts_for"] = tuple(row["counts_for"])
        for name in ("index", "label", "clean_prediction", "prediction", "seed"):
            row[name] = int(row[name])
        for name in ("success", "no_gradient", "budget_exhausted"):
            row[name] = bool(row[name])
        return cls(**row)


@dataclasses.dataclass(frozen=True)
class CleanRecord:
    """One model's clean verdict on one image. certified_l2: ABS's certified-L2 estimate
    (`abs_tf.models.abs.certify`), None for models without one. seconds: the image's share
    of its batch's wall time."""

    model: str
    index: int
    label: int
    prediction: int
    certified_l2: Optional[float]
    seconds: float

    @property
    def key(self) -> tuple:
        return (self.model, self.index)

    def to_json(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, row: dict) -> "CleanRecord":
        fields = [f.name for f in dataclasses.fields(cls)]
        missing = [f for f in fields if f not in row]
        if missing:
            raise ValueError(f"clean record lacks the field(s) {', '.join(missing)}")
        bound = row["certified_l2"]
        return cls(str(row["model"]), int(row["index"]), int(row["label"]), int(row["prediction"]),
                   None if bound is None else float(bound), float(row["seconds"]))


def _fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:  # some filesystems do not open directories; the file itself was synced
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def write_atomic(path: Path, data: bytes) -> None:
    """Writes ``data`` to ``path`` through a synced temporary file and a rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    _fsync_dir(path.parent)


class JsonlLog:
    """An append-only JSON-lines file (see module doc for the crash semantics)."""

    def __init__(self, path):
        self.path = Path(path)

    def read(self) -> list:
        """All complete rows (dicts), in file order; a truncated last line is skipped."""
        if not self.path.exists():
            return []
        rows = []
        data = self.path.read_bytes()
        lines = data.split(b"\n")
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                rows.append(json.loads(line))
            except ValueError:
                if number == len(lines):  # no newline after it: the write was cut short
                    break
                raise ValueError(f"{self.path}: line {number} is not valid JSON (corrupt file; "
                                 "only a truncated last line is tolerated)") from None
        return rows

    def _cut_truncated_tail(self) -> None:
        """Drops bytes after the last newline (a partial line from a killed write)."""
        if not self.path.exists():
            return
        size = self.path.stat().st_size
        if size == 0:
            return
        with open(self.path, "rb+") as f:
            data = f.read()
            end = data.rfind(b"\n") + 1
            if end != size:
                f.truncate(end)
                f.flush()
                os.fsync(f.fileno())

    def append(self, rows: Iterable[dict]) -> None:
        text = "".join(json.dumps(r, allow_nan=False, sort_keys=True) + "\n" for r in rows)
        if not text:
            return
        self._cut_truncated_tail()
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())


def read_records(root) -> list:
    """The `Record`s of an output directory (duplicates refused: one record per key)."""
    records = [Record.from_json(r) for r in JsonlLog(Path(root) / RECORDS_FILE).read()]
    _check_unique(records, "records")
    return records


def read_clean(root) -> list:
    records = [CleanRecord.from_json(r) for r in JsonlLog(Path(root) / CLEAN_FILE).read()]
    _check_unique(records, "clean records")
    return records


def _check_unique(records, what):
    seen = set()
    for r in records:
        if r.key in seen:
            raise ValueError(f"{what}: {r.key} appears twice")
        seen.add(r.key)


def append_records(root, records) -> None:
    JsonlLog(Path(root) / RECORDS_FILE).append(r.to_json() for r in records)


def append_clean(root, records) -> None:
    JsonlLog(Path(root) / CLEAN_FILE).append(r.to_json() for r in records)


def shard_path(model: str, attack: str, indices) -> str:
    """Relative path of the shard holding one batch's adversarials (unique per index set)."""
    indices = np.asarray(indices, np.int64)
    tag = hashlib.sha256(indices.tobytes()).hexdigest()[:8]
    return f"{ADVERSARIALS_DIR}/{check_name(model, 'model')}/{check_name(attack, 'attack')}/" \
           f"{indices[0]:05d}-{indices[-1]:05d}-{tag}.npz"


def write_shard(root, model: str, attack: str, indices, labels, adversarials) -> str:
    """Stores one batch's adversarials (indices int [n], labels int [n], float32 [n, 28, 28, 1]);
    returns the relative path."""
    import io

    indices = np.asarray(indices, np.int64)
    labels = np.asarray(labels, np.int64)
    adversarials = np.asarray(adversarials, np.float32)
    if adversarials.shape != (indices.size, 28, 28, 1):
        raise ValueError(f"adversarials have shape {adversarials.shape}, expected ({indices.size}, 28, 28, 1)")
    relative = shard_path(model, attack, indices)
    buffer = io.BytesIO()
    np.savez_compressed(buffer, indices=indices, labels=labels, adversarials=adversarials)
    write_atomic(Path(root) / relative, buffer.getvalue())
    return relative


def load_shard(root, relative: str):
    """(indices int64 [n], labels int64 [n], adversarials float32 [n, 28, 28, 1]) of a shard."""
    path = Path(root) / relative
    if not path.is_file():
        raise FileNotFoundError(f"adversarial shard {path} is missing")
    try:
        with np.load(path) as data:
            return (np.asarray(data["indices"], np.int64), np.asarray(data["labels"], np.int64),
                    np.asarray(data["adversarials"], np.float32))
    except (OSError, ValueError, KeyError) as e:
        raise ValueError(f"adversarial shard {path} is corrupt: {e}") from e


def load_adversarials(root, records) -> np.ndarray:
    """float32 [len(records), 28, 28, 1]: each record's stored adversarial (NaN rows where a
    record has none)."""
    out = np.full((len(records), 28, 28, 1), np.nan, np.float32)
    cache = {}
    for i, r in enumerate(records):
        if r.adversarial_file is None:
            continue
        if r.adversarial_file not in cache:
            idx, _, adv = load_shard(root, r.adversarial_file)
            cache[r.adversarial_file] = dict(zip(idx.tolist(), adv))
        rows = cache[r.adversarial_file]
        if r.index not in rows:
            raise ValueError(f"record {r.key}: its shard {r.adversarial_file} holds no image {r.index}")
        out[i] = rows[r.index]
    return out
