"""The model registry (abs_tf/registry.py) and the shipped baseline weights in weights/<model>/."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import tensorflow as tf

from abs_tf import paths, registry
from abs_tf.models import cnn, weights_identity
from abs_tf.models.preprocessing import BINARIZE

SHIPPED = ("cnn", "binary_cnn", "madry", "substitute")


def test_registry_lists_every_baseline():
    assert set(SHIPPED) | {"nearest_neighbor", "cnn_official", "binary_cnn_official"} <= set(registry.names())
    assert set(registry.names(trainable_only=True)) >= set(SHIPPED)
    assert "nearest_neighbor" not in registry.names(trainable_only=True)


def test_unknown_model_names_the_registered_ones():
    with pytest.raises(KeyError, match="registered models: .*cnn"):
        registry.build_model("resnet50")


def _save(name, model, directory):
    """Weights as a training run ships them: the file and its identity."""
    path = directory / cnn.WEIGHTS_FILE
    model.save_weights(path)
    weights_identity.stamp(path, **registry.get_spec(name).identity)
    return path


@pytest.mark.parametrize("name", SHIPPED)
def test_build_save_load_roundtrip(name, tmp_path, mnist_test_small):
    x = mnist_test_small[0][:4]
    model = registry.build_model(name)
    assert tuple(model(x).shape) == (4, 10)
    _save(name, model, tmp_path)
    loaded = registry.load_model(name, weights_dir=tmp_path)
    np.testing.assert_array_equal(loaded(x).numpy(), model(x).numpy())


def test_missing_and_corrupt_weights_name_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match=str(tmp_path)):
        registry.load_model("cnn", weights_dir=tmp_path)
    (tmp_path / cnn.WEIGHTS_FILE).write_bytes(b"not an h5 file")
    with pytest.raises(ValueError, match=f"{tmp_path}.*not a readable weights file"):
        registry.load_model("cnn", weights_dir=tmp_path)
    # A file claiming to be madry's weights but holding another architecture's.
    path = _save("substitute", registry.build_model("substitute"), tmp_path)
    weights_identity.stamp(path, **registry.get_spec("madry").identity)
    with pytest.raises(ValueError, match="cannot load weights"):
        registry.load_model("madry", weights_dir=tmp_path)


def test_weights_of_another_model_are_refused_naming_both(tmp_path, repo_root):
    """Issue 19 (3): binary_cnn weights in a cnn directory used to load silently as cnn."""
    shutil.copy(repo_root / "weights" / "binary_cnn" / cnn.WEIGHTS_FILE, tmp_path)
    with pytest.raises(weights_identity.WeightsIdentityError) as error:
        registry.load_model("cnn", weights_dir=tmp_path)
    message = str(error.value)
    assert "holds the weights of {'architecture': 'abs_cnn', 'model': 'binary_cnn'}" in message
    assert "{'model': 'cnn', 'architecture': 'abs_cnn'} was expected" in message
    # weights that say nothing about what they are are refused too
    registry.build_model("cnn").save_weights(tmp_path / cnn.WEIGHTS_FILE)
    with pytest.raises(weights_identity.WeightsIdentityError, match="carries no abs-tf identity"):
        registry.load_model("cnn", weights_dir=tmp_path)


def test_specs_declare_what_each_model_offers():
    families = {n: registry.get_spec(n).family for n in registry.names()}
    assert {n for n, f in families.items() if f == "abs"} == {"abs", "binary_abs", "abs_official",
                                                              "binary_abs_official", "abs_stage7"}
    assert families["nearest_neighbor"] == "nearest_neighbor" and families["madry"] == "classifier"
    assert {n for n in registry.names() if registry.get_spec(n).front_end == "binarize"} == {
        "binary_cnn", "binary_cnn_official", "binary_abs", "binary_abs_official"}
    # A bound on a binarized input certifies nothing about the raw one.
    assert {n for n in registry.names() if registry.get_spec(n).certified_bounds} == {"abs", "abs_official",
                                                                                    "abs_stage7"}
    assert {n for n in registry.names() if registry.get_spec(n).calibrated_probabilities} == set(
        n for n, f in families.items() if f == "abs")
    assert registry.get_spec("abs").export_options == {"xla_kernels": False}
    assert registry.get_spec("cnn").export_options == {} and registry.get_spec("cnn").search_options == ()
    assert "n_samples" not in registry.get_spec("abs_official").search_options   # the release's own samples
    logits = tf.constant([[0.0, -0.01] + [-1.0] * 8])
    np.testing.assert_allclose(registry.get_spec("cnn").probabilities(logits).numpy(),
                               tf.nn.softmax(logits).numpy())
    assert registry.get_spec("abs").probabilities(logits).numpy()[0, 0] > 0.98   # 440-scaled softmax


@pytest.mark.parametrize("name", ["cnn", "binary_cnn", "madry", "substitute"])
def test_front_end_matches_the_model(name):
    model = registry.build_model(name)
    assert model.preprocessing is (BINARIZE if registry.get_spec(name).front_end == "binarize" else None)


def test_options_are_passed_through_or_refused_by_name():
    with pytest.raises(TypeError, match=r"'cnn' does not accept the option\(s\) n_samples \(it accepts: none\)"):
        registry.load_model("cnn", n_samples=10)
    with pytest.raises(TypeError, match=r"'abs' does not accept the option\(s\) colour, size"):
        registry.load_model("abs", size=3, colour="red")
    with pytest.raises(TypeError, match="n_samples"):
        registry.load_model("abs_official", n_samples=10)
    model = registry.load_model("abs", n_samples=30, n_steps=2, projection="original", max_batch=7)
    assert (model.n_samples, model.n_steps, model.projection, model.max_batch) == (30, 2, "original", 7)
    with pytest.raises(ValueError, match="n_steps must be an integer >= 1"):
        registry.load_model("abs", n_samples=30, n_steps=0)


def test_default_weights_come_from_the_package_and_the_reference_setting(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    assert registry.default_weights_dir("abs") == paths.REPO_ROOT / "weights" / "abs_vae"
    assert registry.default_weights_dir("cnn") == paths.REPO_ROOT / "weights" / "cnn"
    assert registry.default_weights_dir("nearest_neighbor") is None
    monkeypatch.setenv(paths.REFERENCE_DIR_ENV, str(tmp_path / "release"))
    assert registry.default_weights_dir("abs_official") == tmp_path / "release"
    assert registry.default_weights_dir("cnn_official") == tmp_path / "release"
    with pytest.raises(FileNotFoundError, match=str(tmp_path / "release")):
        registry.load_model("cnn_official")


def test_official_cnn_through_the_registry(reference_dir, mnist_test):
    x, y = mnist_test
    model = registry.load_model("cnn_official")
    assert cnn.accuracy(model, x[:500], y[:500]) >= 0.99
    binary = registry.load_model("binary_cnn_official")
    assert binary.binary and cnn.accuracy(binary, x[:500], y[:500]) >= 0.98


def test_nearest_neighbor_through_the_registry(mnist_dir, mnist_test):
    x, y = mnist_test
    model = registry.load_model("nearest_neighbor")
    logits = model(x[:50]).numpy()
    assert logits.shape == (50, 10) and np.all(logits < 0)
    assert np.mean(logits.argmax(1) == y[:50]) >= 0.9


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_weights_reproduce_their_recorded_accuracy(name, repo_root, mnist_test):
    """RobustBench-style: the weights in weights/<name>/ give the accuracy their provenance
    records (metrics.json, mirrored in PROVENANCE.md) on the first 1000 test images, +-0.3 %."""
    directory = repo_root / "weights" / name
    metrics = json.loads((directory / "metrics.json").read_text())
    provenance = (directory / "PROVENANCE.md").read_text()
    recorded = metrics["test_accuracy_first1000"]
    assert f"{100 * recorded:.1f} %" in provenance
    assert (directory / cnn.WEIGHTS_FILE).stat().st_size < 20 * 2 ** 20
    x, y = mnist_test
    model = registry.load_model(name)
    assert abs(cnn.accuracy(model, x[:1000], y[:1000]) - recorded) <= 0.003
    assert metrics["test_accuracy"] >= {"cnn": 0.99, "binary_cnn": 0.985, "madry": 0.98, "substitute": 0.99}[name]


def test_abs_stage7_reads_the_stage7_weights(repo_root):
    assert registry.default_weights_dir("abs_stage7") == repo_root / "weights" / "abs_vae_stage7"
    small = registry.load_model("abs_stage7", n_samples=10, n_steps=1)
    shipped = registry.load_model("abs", n_samples=10, n_steps=1)
    x = tf.zeros([1, 28, 28, 1]) + 0.1
    assert not np.allclose(small(x).numpy(), shipped(x).numpy())   # other decoders, same search
