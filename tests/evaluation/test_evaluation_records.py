"""Records storage: JSON round trip, append-only JSONL that survives a kill, adversarial shards."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from abs_tf.evaluation import records as rec


def test_record_round_trip_keeps_inf_as_null(record):
    r = record("cnn", "fgsm", 7, distance=None)
    row = r.to_json()
    assert row["distances"]["l2"] is None
    text = json.dumps(row, allow_nan=False)  # strict JSON: no Infinity
    back = rec.Record.from_json(json.loads(text))
    assert back == r and math.isinf(back.distances["linf"])
    row.pop("label")
    with pytest.raises(ValueError, match="label"):
        rec.Record.from_json(row)


def test_truncated_last_line_is_dropped_and_cut_before_the_next_append(tmp_path, record):
    rec.append_records(tmp_path, [record(index=0, distance=1.0), record(index=1, distance=2.0)])
    path = tmp_path / rec.RECORDS_FILE
    whole = path.read_bytes()
    path.write_bytes(whole + whole.splitlines(keepends=True)[0][:40])  # a kill mid-write
    assert [r.index for r in rec.read_records(tmp_path)] == [0, 1]
    rec.append_records(tmp_path, [record(index=2, distance=3.0)])
    assert [r.index for r in rec.read_records(tmp_path)] == [0, 1, 2]
    assert path.read_bytes().count(b"\n") == 3


def test_corrupt_line_inside_the_file_is_an_error(tmp_path, record):
    rec.append_records(tmp_path, [record(index=0, distance=1.0)])
    path = tmp_path / rec.RECORDS_FILE
    path.write_bytes(path.read_bytes() + b"{not json\n" + path.read_bytes().replace(b'"index": 0', b'"index": 5'))
    with pytest.raises(ValueError, match="line 2"):
        rec.read_records(tmp_path)


def test_duplicate_records_are_refused(tmp_path, record):
    rec.append_records(tmp_path, [record(index=0, distance=1.0), record(index=0, distance=2.0)])
    with pytest.raises(ValueError, match="twice"):
        rec.read_records(tmp_path)


def test_shards_round_trip_and_names(tmp_path):
    adversarials = np.random.default_rng(0).uniform(size=(3, 28, 28, 1)).astype(np.float32)
    relative = rec.write_shard(tmp_path, "cnn", "pgd_linf", [4, 9, 11], [1, 2, 3], adversarials)
    indices, labels, back = rec.load_shard(tmp_path, relative)
    np.testing.assert_array_equal(indices, [4, 9, 11])
    np.testing.assert_array_equal(labels, [1, 2, 3])
    np.testing.assert_array_equal(back, adversarials)
    # another index set with the same ends gets another file (a partial batch never overwrites)
    assert rec.shard_path("cnn", "pgd_linf", [4, 11]) != relative
    with pytest.raises(ValueError, match="model name"):
        rec.shard_path("../cnn", "fgsm", [0])
    (tmp_path / relative).write_bytes(b"garbage")
    with pytest.raises(ValueError, match="corrupt"):
        rec.load_shard(tmp_path, relative)
