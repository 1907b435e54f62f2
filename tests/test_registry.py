"""The model registry (abs_tf/registry.py) and the shipped baseline weights in weights/<model>/."""

from __future__ import annotations

import json

import numpy as np
import pytest
import tensorflow as tf

from abs_tf import registry
from abs_tf.training import classifier as classifier_training
from abs_tf.models import cnn

SHIPPED = ("cnn", "binary_cnn", "madry", "substitute")


def test_registry_lists_every_baseline():
    assert set(SHIPPED) | {"nearest_neighbor", "cnn_official", "binary_cnn_official"} <= set(registry.names())
    assert set(registry.names(trainable_only=True)) >= set(SHIPPED)
    assert "nearest_neighbor" not in registry.names(trainable_only=True)


def test_unknown_model_names_the_registered_ones():
    with pytest.raises(KeyError, match="registered models: .*cnn"):
        registry.build_model("resnet50")


@pytest.mark.parametrize("name", SHIPPED)
def test_build_save_load_roundtrip(name, tmp_path, mnist_test_small):
    x = mnist_test_small[0][:4]
    model = registry.build_model(name)
    assert tuple(model(x).shape) == (4, 10)
    model.save_weights(tmp_path / classifier_training.WEIGHTS_FILE)
    loaded = registry.load_model(name, weights_dir=tmp_path)
    np.testing.assert_array_equal(loaded(x).numpy(), model(x).numpy())


def test_missing_and_corrupt_weights_name_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match=str(tmp_path)):
        registry.load_model("cnn", weights_dir=tmp_path)
    (tmp_path / classifier_training.WEIGHTS_FILE).write_bytes(b"not an h5 file")
    with pytest.raises(ValueError, match="cannot load weights"):
        registry.load_model("cnn", weights_dir=tmp_path)
    registry.build_model("substitute").save_weights(tmp_path / classifier_training.WEIGHTS_FILE)
    with pytest.raises(ValueError, match="cannot load weights"):  # another architecture's weights
        registry.load_model("madry", weights_dir=tmp_path)


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
    assert (directory / classifier_training.WEIGHTS_FILE).stat().st_size < 20 * 2 ** 20
    x, y = mnist_test
    model = registry.load_model(name)
    assert abs(cnn.accuracy(model, x[:1000], y[:1000]) - recorded) <= 0.003
    assert metrics["test_accuracy"] >= {"cnn": 0.99, "binary_cnn": 0.985, "madry": 0.98, "substitute": 0.99}[name]
