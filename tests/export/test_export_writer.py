"""Version folders: integers >= 1, never overwritten, complete or absent (a killed export leaves none)."""

from __future__ import annotations

from pathlib import Path

import pytest
import tensorflow as tf

from abs_tf.export import writer


class Tiny(tf.Module):
    @tf.function(input_signature=[tf.TensorSpec([None], tf.float32, name="x")])
    def serving_default(self, x):
        return {"y": 2.0 * x}


def _save(directory, version=None):
    module = Tiny()
    return writer.save_version(module, {"serving_default": module.serving_default}, directory, version)


@pytest.mark.parametrize("version", [0, -1, 1.5, "2", True])
def test_versions_must_be_integers_from_one(tmp_path, version):
    with pytest.raises(ValueError, match="version must be an integer >= 1"):
        _save(tmp_path / "m", version)
    assert not (tmp_path / "m" / str(version)).exists()


def test_next_version_and_no_overwrite(tmp_path):
    directory = tmp_path / "m"
    assert _save(directory) == directory / "1"
    assert _save(directory, 7) == directory / "7"
    assert _save(directory) == directory / "8"
    before = (directory / "7" / "saved_model.pb").read_bytes()
    with pytest.raises(FileExistsError, match="never overwritten"):
        _save(directory, 7)
    assert (directory / "7" / "saved_model.pb").read_bytes() == before
    serve = tf.saved_model.load(str(directory / "8")).signatures["serving_default"]
    assert serve(x=tf.ones([2]))["y"].numpy().tolist() == [2.0, 2.0]


def test_an_interrupted_save_leaves_no_version(tmp_path, monkeypatch):
    """The version folder appears only by the final rename: a save that dies midway (here: an
    interrupt after part of the files are written) leaves neither the version nor its staging."""
    directory = tmp_path / "m"
    real_save = tf.saved_model.save

    def dying_save(module, path, signatures=None):
        real_save(module, path, signatures=signatures)
        assert not (directory / "1").exists()          # still only in the staging folder
        (Path(path) / "saved_model.pb").unlink()
        raise KeyboardInterrupt

    monkeypatch.setattr(tf.saved_model, "save", dying_save)
    with pytest.raises(KeyboardInterrupt):
        _save(directory)
    assert list(directory.iterdir()) == []
    monkeypatch.undo()
    assert _save(directory) == directory / "1"


def test_a_killed_export_s_staging_folder_is_no_version(tmp_path):
    """What SIGKILL leaves (a staging folder without saved_model.pb) is not a version to TF Serving
    (not a number), not counted by next_version, and listed as stale."""
    directory = tmp_path / "m"
    stale = directory / f".1{writer.STAGING_MARK}deadbeef"
    (stale / "variables").mkdir(parents=True)
    assert _save(directory) == directory / "1"
    assert writer.stale_staging_folders(directory) == [stale]


def test_a_file_in_the_way_is_named(tmp_path):
    (tmp_path / "base").write_text("")
    with pytest.raises(NotADirectoryError, match="base exists and is not a directory"):
        writer.model_dir(tmp_path / "base", "abs")
