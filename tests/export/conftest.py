"""Shared fixtures of the export tests: a small ABS (the shipped VAEs, 60 latent samples, 3 search
steps) and its exports, each built once per session."""

from __future__ import annotations

import pytest
import tensorflow as tf

from abs_tf import registry
from abs_tf.export.savedmodel import export_model

SMALL_ABS = dict(n_samples=60, n_steps=3)


@pytest.fixture(scope="session")
def small_abs():
    """The registry's export variant of ABS with small search settings (in process)."""
    return registry.load_model("abs", **SMALL_ABS, **registry.get_spec("abs").export_options)


@pytest.fixture(scope="session")
def digits(mnist_test_small):
    """Four real test digits [4,28,28,1] in [0,1] and their labels."""
    images, labels = mnist_test_small
    return images[:4], labels[:4]


@pytest.fixture(scope="session")
def abs_export(tmp_path_factory, small_abs):
    """The default export (no XLA, decoded samples computed at load) of ``small_abs``: its path."""
    return export_model(small_abs, registry.get_spec("abs"), "abs", tmp_path_factory.mktemp("exports"))


@pytest.fixture(scope="session")
def abs_loaded(abs_export):
    return tf.saved_model.load(str(abs_export))
