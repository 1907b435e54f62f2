"""Helper scripts: the parts with logic of their own."""

from __future__ import annotations

import importlib.util

import numpy as np


def _load_script(repo_root, name):
    spec = importlib.util.spec_from_file_location(name, repo_root / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_hard_indices_union_of_runs_below_ratio(repo_root, tmp_path):
    script = _load_script(repo_root, "compare_vaes_on_hard_images")
    labels = np.array([0, 1, 2])
    # class losses (logits are their negatives); own class first in each row's label position
    run_a = np.array([[0.010, 0.011, 0.05],    # image 10: wrong/own = 1.1 -> hard
                      [0.050, 0.010, 0.05],    # image 11: 5.0 -> easy
                      [0.020, 0.030, 0.04]])   # image 12: 0.5 -> misclassified, hard
    run_b = run_a.copy()
    run_b[1] = [0.012, 0.010, 0.05]            # image 11 hard in run b only (1.2)
    for name, losses in (("a", run_a), ("b", run_b)):
        np.savez(tmp_path / f"{name}.npz", logits=-losses, labels=labels, indices=np.array([10, 11, 12]))
    assert script.hard_indices([tmp_path / "a.npz"], 1.25).tolist() == [10, 12]
    assert script.hard_indices([tmp_path / "a.npz", tmp_path / "b.npz"], 1.25).tolist() == [10, 11, 12]
    assert script.hard_indices([tmp_path / "a.npz"], 1.05).tolist() == [12]


def test_calibration_subset_is_seeded_distinct_and_checked(repo_root):
    import pytest

    script = _load_script(repo_root, "calibrate_binary_scalings")
    a = script.calibration_subset(60000, 500, seed=0)
    assert len(np.unique(a)) == 500 and np.all(np.diff(a) > 0) and a.max() < 60000
    np.testing.assert_array_equal(a, script.calibration_subset(60000, 500, seed=0))
    assert not np.array_equal(a, script.calibration_subset(60000, 500, seed=1))
    for bad in (0, 60001):
        with pytest.raises(ValueError, match="num_images"):
            script.calibration_subset(60000, bad, seed=0)


def test_calibrate_binary_scalings_end_to_end(repo_root, mnist_dir, tmp_path):
    """A tiny run: the written scalings are the cross-validated choice on the cached losses and
    the recorded accuracies are those of the cached losses (test_abs checks that Binary ABS
    reads the file)."""
    import json
    import os
    import subprocess
    import sys

    from abs_tf.models.abs import calibration
    from abs_tf.models.abs.model import BINARY_SCALINGS

    weights = tmp_path / "vaes"
    weights.mkdir()
    for c in range(10):
        (weights / f"vae_{c}.weights.h5").symlink_to(repo_root / "weights" / "abs_vae" / f"vae_{c}.weights.h5")
    cache = tmp_path / "losses.npz"
    args = [sys.executable, str(repo_root / "scripts" / "calibrate_binary_scalings.py"), f"--weights={weights}",
            "--num_images=24", "--n_samples=100", "--n_steps=2", f"--data_dir={mnist_dir}", f"--losses_file={cache}"]
    proc = subprocess.run(args, capture_output=True, text=True, timeout=600,
                          env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"))
    assert proc.returncode == 0, proc.stderr[-2000:]
    record = json.loads((weights / calibration.SCALINGS_FILE).read_text())
    with np.load(cache) as cached:
        losses, indices = cached["losses"], cached["indices"]
    from abs_tf import data

    labels = data.load_mnist("train", mnist_dir)[1][indices]
    chosen = calibration.choose_scalings(losses, labels, {"ones": np.ones(10), "release": BINARY_SCALINGS})
    np.testing.assert_array_equal(record["scalings"], chosen["scalings"])
    assert record["choice"] == chosen["choice"]
    np.testing.assert_array_equal(record["fitted_on_all"], calibration.fit_class_scalings(losses, labels))
    assert record["training_subset_accuracy"]["ones"] == calibration.scaled_accuracy(losses, labels, np.ones(10))
    assert record["num_images"] == 24 and losses.shape == (24, 10)


def test_prior_coverage_of_the_shipped_decoders(repo_root):
    """Decoded prior latents of each shipped class decoder look like that class to the shipped
    CNN (a class-order or weight-loading mix-up would send this towards 0), and the helper
    counts per class."""
    from abs_tf import ABS

    script = _load_script(repo_root, "decoder_prior_coverage")
    d = script.unit_directions(50, seed=3)
    np.testing.assert_allclose(np.linalg.norm(d, axis=1), 1.0, rtol=1e-6)
    np.testing.assert_array_equal(d, script.unit_directions(50, seed=3))

    model = ABS.from_weights(repo_root / "weights" / "abs_vae", n_steps=1, n_samples=10)
    images = script.decode_all_classes(model, d * 2.0)
    assert images.shape == (50, 28, 28, 10) and images.min() >= 0 and images.max() <= 1
    classify = script.label_function("cnn")
    fractions = script.own_class_fraction(images, classify)
    assert fractions.shape == (10,)
    assert fractions.mean() > 0.85, fractions
    # the same images with the class channels rotated by one: almost never the "own" class
    rotated = script.own_class_fraction(np.roll(images, 1, axis=-1), classify)
    assert rotated.mean() < 0.1, rotated


def test_compare_abs_gradients_estimators_agree_with_the_exact_gradient_on_a_linear_model(repo_root):
    """The comparison's mechanics: on a linear model the coordinate-wise finite differences are
    exact, so FGM finds the same minimal adversarials with them as with the model's gradient
    (while paying 2 x 784 queries per gradient); the loss variants are the three compared."""
    from abs_tf import attacks
    from abs_tf.attacks.linear import linear_problem

    script = _load_script(repo_root, "compare_abs_gradients")
    model, x, y = linear_problem(seed=9, n=3)
    variants = dict(script.gradient_variants(model, ["4"], True, 0.01, 1000))
    assert list(variants) == ["envelope", "gaussian 4 pairs", "coordinates"]
    exact = script.minimal_row(attacks.FGM(), variants["envelope"], x, y, gradient="envelope")
    coordinates = script.minimal_row(attacks.FGM(), variants["coordinates"], x, y, gradient="coordinates")
    assert exact["found"] == coordinates["found"] == 1.0
    np.testing.assert_allclose(coordinates["distances"], exact["distances"], rtol=1e-3)
    assert coordinates["queries_per_image"] >= exact["queries_per_image"] + 2 * 784 - 1
    labels = [label for label, _, _ in script.loss_variants(model, is_abs=True)]
    assert labels == ["crossentropy", "margin", "crossentropy x440 logits"]
    assert [label for label, _, _ in script.loss_variants(model, is_abs=False)] == labels[:2]
    np.testing.assert_allclose(script.scaled(model, 440.0)(x).numpy(), 440.0 * model(x).numpy(), rtol=1e-6)


def test_distal_distance_to_data_is_zero_on_training_images(repo_root, mnist_train):
    from abs_tf import registry

    script = _load_script(repo_root, "distal_distance_to_data")
    images = np.asarray(mnist_train[0][:2])
    nn = registry.load_model("nearest_neighbor")
    np.testing.assert_allclose(script.distances_to_data(nn, images), 0.0, atol=1e-3)
    shifted = np.clip(images + 0.1, 0, 1)   # moved off the data: the distance is at most that move
    d = script.distances_to_data(nn, shifted)
    assert np.all(d > 0.1) and np.all(d <= np.sqrt(((shifted - images) ** 2).sum(axis=(1, 2, 3))) + 1e-3)
