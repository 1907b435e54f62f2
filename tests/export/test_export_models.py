"""Every registered model exports, with the signatures its registry entry's capabilities call for.

Small settings keep this fast (ABS itself: the session's export of conftest.py, tested in detail
in test_export_signatures.py): ABS models search 30 latent samples for 2 steps (the release's
converted ABS gets the first 30 of its own samples), the nearest neighbour 500 training images.
The full-size exports are checked by scripts/check_full_export.py.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import tensorflow as tf

from abs_tf import registry
from abs_tf.export.savedmodel import export_model
from abs_tf.models.nearest_neighbor import NearestNeighbor

N_SAMPLES, N_STEPS = 30, 2


def _small_model(name, reference_dir, mnist_train, tmp_path):
    """The registered model ``name`` in its export variant, with small settings where it has any."""
    spec = registry.get_spec(name)
    options = dict(spec.export_options)
    if spec.family == "nearest_neighbor":        # its "weights" are the training set
        images, labels = mnist_train
        return NearestNeighbor(images[:500], labels[:500])
    if spec.family != "abs":
        return registry.load_model(name)
    options["n_steps"] = N_STEPS
    if "n_samples" in spec.search_options:
        return registry.load_model(name, n_samples=N_SAMPLES, **options)
    # The release's ABS brings its own latent samples: a copy of its directory with fewer of them.
    (tmp_path / "abs_vae_weights.npz").symlink_to(reference_dir / "abs_vae_weights.npz")
    np.save(tmp_path / "latent_samples.npy", np.load(reference_dir / "latent_samples.npy")[:N_SAMPLES])
    return registry.load_model(name, tmp_path, **options)


# "abs" itself is exported once per session (conftest.py) and tested in detail in the other files.
# The other ABS variants differ from "abs" only in their weights and front end; binary_abs stays in the
# fast suite, the rest (about 30 s each) run with `make test-slow`.
_SLOW_EXPORTS = ("abs_official", "binary_abs_official", "abs_stage7")


@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.slow) if n in _SLOW_EXPORTS else n
                                  for n in registry.names() if n != "abs"])
def test_every_registered_model_exports(name, reference_dir, mnist_train, digits, tmp_path):
    spec = registry.get_spec(name)
    model = _small_model(name, reference_dir, mnist_train, tmp_path)
    path = export_model(model, spec, name, tmp_path / "exports")
    assert path == tmp_path / "exports" / name / "1"
    loaded = tf.saved_model.load(str(path))

    expected = {"serving_default", "classify_uint8", "config"} | ({"explain"} if spec.family == "abs" else set())
    assert set(loaded.signatures) == expected
    if spec.family == "abs":
        explain_outputs = set(loaded.signatures["explain"].structured_outputs)
        assert ("certified_l2" in explain_outputs) == spec.certified_bounds
        assert (path / "assets" / "abs_config.json").is_file()

    x, _ = digits
    out = loaded.signatures["serving_default"](images=tf.constant(x))
    logits = model(x).numpy()
    np.testing.assert_allclose(out["logits"].numpy(), logits, atol=1e-5)
    np.testing.assert_allclose(out["probabilities"].numpy(), spec.probabilities(logits).numpy(), atol=1e-5)

    settings = json.loads(loaded.signatures["config"]()["json"].numpy().decode())
    assert settings["model"] == name and settings["family"] == spec.family
    assert settings["front_end"] == (spec.front_end or "none")
    assert ("abs_search" in settings) == (spec.family == "abs")
