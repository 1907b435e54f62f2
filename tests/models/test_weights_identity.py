"""Weights files say what they hold, and loaders refuse a file in the wrong place (issue 19 (3))."""

from __future__ import annotations

import json
import shutil

import h5py
import pytest

from abs_tf import registry
from abs_tf.models import cnn, weights_identity
from abs_tf.models.abs.model import ABS
from abs_tf.models.abs import vae_weights

CLASSIFIERS = {"cnn": "abs_cnn", "binary_cnn": "abs_cnn", "madry": "madry", "substitute": "substitute"}


@pytest.mark.parametrize("name", sorted(CLASSIFIERS))
def test_shipped_classifier_weights_carry_their_identity(repo_root, name):
    path = repo_root / "weights" / name / cnn.WEIGHTS_FILE
    assert weights_identity.read(path) == {"model": name, "architecture": CLASSIFIERS[name]}
    assert registry.get_spec(name).identity == {"model": name, "architecture": CLASSIFIERS[name]}


@pytest.mark.parametrize("directory", ["abs_vae", "abs_vae_stage7"])
def test_shipped_vae_weights_carry_their_class(repo_root, directory):
    for c in range(10):
        path = repo_root / "weights" / directory / vae_weights.WEIGHTS_PATTERN.format(c)
        assert weights_identity.read(path) == {"model": "abs_vae", "architecture": "class_vae", "class_id": c}


def test_stamp_read_check_round_trip(tmp_path):
    path = tmp_path / "w.weights.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("x", data=[1.0, 2.0])
    assert weights_identity.read(path) is None
    weights_identity.check(path, "cnn", "abs_cnn", allow_missing=True)        # allowed explicitly
    weights_identity.stamp(path, "cnn", "abs_cnn")
    weights_identity.check(path, "cnn", "abs_cnn")
    with h5py.File(path, "r") as f:                                           # data untouched
        assert list(f["x"][()]) == [1.0, 2.0]
        assert json.loads(f.attrs[weights_identity.ATTRIBUTE]) == {"architecture": "abs_cnn", "model": "cnn"}
    with pytest.raises(weights_identity.WeightsIdentityError, match="'class_id': 3"):
        weights_identity.check(path, "abs_vae", "class_vae", class_id=3)


def test_vae_of_another_class_is_refused(tmp_path, repo_root):
    """vae_4 copied over vae_3 used to load silently as class 3."""
    shipped = repo_root / "weights" / "abs_vae"
    for c in range(10):
        source = shipped / vae_weights.WEIGHTS_PATTERN.format(4 if c == 3 else c)
        shutil.copy(source, tmp_path / vae_weights.WEIGHTS_PATTERN.format(c))
    with pytest.raises(weights_identity.WeightsIdentityError) as error:
        vae_weights.load_vaes(tmp_path, classes=[3])
    assert "vae_3.weights.h5" in str(error.value) and "'class_id': 4" in str(error.value)
    with pytest.raises(weights_identity.WeightsIdentityError, match="'class_id': 4"):
        ABS.from_weights(tmp_path, n_samples=10, n_steps=1)
