"""The class-VAE trainer (abs_tf/training/vae.py), the augmentation (abs_tf/training/augment.py),
VAE runs (abs_tf/training/run.py, run_dir.py) and train.py --model=vae."""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf

from abs_tf.models import weights_identity
from abs_tf.models.abs.vae import build_vae
from abs_tf.training import loop, run, run_dir
from abs_tf.models.abs import vae_weights
from abs_tf.training import vae as vae_training
from abs_tf.training.augment import random_affine
from abs_tf.training.config import VAETrainingConfig
from abs_tf.training.determinism import seed_globals

CLASS_ID = 3
SEED = 1


@pytest.fixture(scope="module")
def class_data(mnist_train, mnist_test):
    """256 training and 100 test images of one class."""
    (xtr, ytr), (xte, yte) = mnist_train, mnist_test
    return np.array(xtr[ytr == CLASS_ID][:256]), np.array(xte[yte == CLASS_ID][:100])


def _train(class_data, out_dir, epochs, augment=True, **options):
    """What `run.train_vae_run` does for one class: seed, build (and load init_from), train."""
    config = VAETrainingConfig(classes=(CLASS_ID,), epochs=epochs, batch_size=64, seed=SEED, augment=augment,
                               **options)
    seed_globals(config.class_seed(CLASS_ID))
    vae = vae_training.new_class_vae(config, CLASS_ID)
    train_x, test_x = class_data
    return vae, vae_training.train_class_vae(vae, train_x, test_x, class_id=CLASS_ID, out_dir=out_dir,
                                             config=config, verbose=0)


def _event_tags(directory):
    tags = {}
    for f in sorted(directory.glob("events.out.tfevents.*")):
        for event in tf.compat.v1.train.summary_iterator(str(f)):
            for v in event.summary.value:
                tags.setdefault(v.tag, []).append(event.step)
    return tags


class _Killed(Exception):
    pass


def _killed_in_epoch_2(monkeypatch):
    real_epoch_batches = loop.epoch_batches

    def epoch_batches(num, batch_size, seed, epoch):
        if epoch == 1:
            raise _Killed()
        return real_epoch_batches(num, batch_size, seed, epoch)

    monkeypatch.setattr(loop, "epoch_batches", epoch_batches)


# --------------------------------------------------------------------------- the class-VAE trainer

def test_train_class_vae_lowers_test_loss(class_data, tmp_path):
    train_x, test_x = class_data
    keras.utils.set_random_seed(SEED * 100 + CLASS_ID)  # the initialisation training starts from
    untrained = vae_training.evaluate_vae(build_vae(), test_x)
    vae, metrics = _train(class_data, tmp_path, epochs=3, augment=False)
    assert metrics["loss"] < 0.8 * untrained["loss"], (metrics, untrained)
    assert metrics["reconstruction_mse"] < untrained["reconstruction_mse"]
    assert metrics["epochs"] == 3 and metrics["class_id"] == CLASS_ID and metrics["resumed_from_epoch"] == 0
    assert len(metrics["history"]["test/loss"]) == 3 and metrics["history"]["test/loss"][-1] == metrics["loss"]
    assert json.loads((tmp_path / f"vae_{CLASS_ID}.json").read_text())["loss"] == pytest.approx(metrics["loss"])

    # the saved weights say what they are, and round-trip through load_vaes
    weights = tmp_path / f"vae_{CLASS_ID}.weights.h5"
    assert weights_identity.read(weights) == {"model": "abs_vae", "architecture": "class_vae", "class_id": CLASS_ID}
    (loaded,) = vae_weights.load_vaes(tmp_path, classes=[CLASS_ID])
    for a, b in zip(vae.weights, loaded.weights):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    assert vae_training.evaluate_vae(loaded, test_x)["loss"] == pytest.approx(metrics["loss"], rel=1e-6)

    # TensorBoard: per-step/epoch scalars and the reconstruction image
    tags = _event_tags(tmp_path / "tb" / f"class_{CLASS_ID}")
    assert tags["epoch/test/loss"] == [1, 2, 3] and tags["epoch/train/loss"] == [1, 2, 3]
    assert any(t.startswith("reconstructions/") for t in tags)


def test_init_from_starts_from_the_given_weights_and_checks_their_identity(class_data, tmp_path):
    _, first = _train(class_data, tmp_path / "first", epochs=1, augment=False)
    _, tuned = _train(class_data, tmp_path / "tuned", epochs=1, augment=False, init_from=str(tmp_path / "first"))
    _, scratch = _train(class_data, tmp_path / "scratch", epochs=1, augment=False)
    # two epochs' worth of training beat one; a run from scratch with the same recipe is the first run again
    assert tuned["loss"] < first["loss"] and scratch["loss"] == pytest.approx(first["loss"], rel=1e-6)
    with pytest.raises(FileNotFoundError, match=r"class 3 not found: .*missing/vae_3\.weights\.h5"):
        _train(class_data, tmp_path / "x", epochs=1, init_from=str(tmp_path / "missing"))
    # weights of another class copied into the slot of class 3 are refused, naming both
    wrong = tmp_path / "wrong"
    wrong.mkdir()
    vae_training.save_vae_weights(build_vae(), wrong / "vae_3.weights.h5", class_id=4)
    with pytest.raises(weights_identity.WeightsIdentityError, match=r"'class_id': 4.*'class_id': 3"):
        _train(class_data, tmp_path / "y", epochs=1, init_from=str(wrong))


def test_train_class_vae_resume_is_exact(class_data, tmp_path, monkeypatch):
    """Killed after epoch 1 of 2 and run again == one uninterrupted 2-epoch run (augmentation on)."""
    with monkeypatch.context() as m:
        _killed_in_epoch_2(m)
        with pytest.raises(_Killed):
            _train(class_data, tmp_path / "a", epochs=2)
    assert tf.train.latest_checkpoint(str(tmp_path / "a" / "ckpt" / f"class_{CLASS_ID}")).endswith("ckpt-1")
    assert not (tmp_path / "a" / f"vae_{CLASS_ID}.weights.h5").exists()

    resumed, metrics_a = _train(class_data, tmp_path / "a", epochs=2)
    assert metrics_a["resumed_from_epoch"] == 1
    straight, metrics_b = _train(class_data, tmp_path / "b", epochs=2)
    assert metrics_b["resumed_from_epoch"] == 0
    assert len(resumed.weights) == len(straight.weights)
    for a, b in zip(resumed.weights, straight.weights):
        np.testing.assert_array_equal(a.numpy(), b.numpy(), err_msg=a.path)  # bit-identical
    assert metrics_a["loss"] == pytest.approx(metrics_b["loss"], abs=1e-6)
    # the resumed record keeps the first invocation's epoch in its history
    assert metrics_a["history"] == metrics_b["history"]
    # the run did move away from the initialisation (so the comparison above means something)
    keras.utils.set_random_seed(SEED * 100 + CLASS_ID)
    init = build_vae()
    assert max(float(np.abs(a.numpy() - b.numpy()).max()) for a, b in zip(init.weights, straight.weights)) > 1e-3


def test_evaluate_vae_reports_the_abs_loss_whatever_the_training_beta(class_data):
    _, test_x = class_data
    keras.utils.set_random_seed(3)
    vae = build_vae(beta=1.0)
    low_beta = build_vae(beta=0.25)
    low_beta.set_weights(vae.get_weights())
    x = tf.constant(test_x[:50])
    mu = vae.posterior(x).mean()
    expected = (tf.reduce_sum(tf.square(x - vae.decode(mu)), [1, 2, 3]) + 0.5 * tf.reduce_sum(tf.square(mu), -1)) / 784
    for model in (vae, low_beta):
        got = vae_training.evaluate_vae(model, test_x[:50], batch_size=20)["loss"]
        assert got == pytest.approx(float(tf.reduce_mean(expected)), rel=1e-5)


# --------------------------------------------------------------------------- VAE runs (run directories)

def _run(mnist_dir, out_dir, **options):
    config = VAETrainingConfig(**{"classes": (0,), "epochs": 2, "train_images": 300, **options})
    return run.train_vae_run(config, out_dir, mnist_dir, command="test", verbose=0)


def test_vae_run_refuses_other_settings_on_resume_and_after_finishing(mnist_dir, tmp_path, monkeypatch):
    """Issue 19: a run interrupted after its first checkpoint, rerun with other batch size, beta
    and seed, is refused naming the three values; so is a finished one, whose config.json and
    summary.json stay as they were."""
    out = tmp_path / "run"
    with monkeypatch.context() as m:
        _killed_in_epoch_2(m)
        with pytest.raises(_Killed):
            _run(mnist_dir, out)
    config_before = (out / "config.json").read_bytes()
    other = dict(batch_size=32, beta=0.1, seed=5)
    with pytest.raises(run_dir.ConfigMismatchError) as info:
        _run(mnist_dir, out, **other)
    message = str(info.value)
    for expected in ("batch_size: 64 in the run, 32 now", "beta: 1.0 in the run, 0.1 now", "seed: 0 in the run, 5 now"):
        assert expected in message, message
    assert (out / "config.json").read_bytes() == config_before

    results = _run(mnist_dir, out)  # the run's own settings resume it
    assert results[0]["resumed_from_epoch"] == 1 and len(results[0]["history"]["train/loss"]) == 2
    summary = (out / "summary.json").read_bytes()
    assert json.loads(summary)["results"]["0"]["loss"] == pytest.approx(results[0]["loss"])

    with pytest.raises(run_dir.ConfigMismatchError, match="beta: 1.0 in the run, 0.1 now"):
        _run(mnist_dir, out, beta=0.1)
    assert (out / "config.json").read_bytes() == config_before and (out / "summary.json").read_bytes() == summary

    # another class in the same run directory (as a second process would) is trained alongside
    both = _run(mnist_dir, out, classes=(1,))
    assert sorted(both) == [0, 1] and both[0] == results[0]


def test_random_affine():
    x = np.zeros((64, 28, 28, 1), np.float32)
    x[:, 10:18, 12:16] = 1.0
    seed = tf.constant([3, 4], tf.int32)
    out = random_affine(tf.constant(x), seed).numpy()
    np.testing.assert_array_equal(out, random_affine(tf.constant(x), seed).numpy())
    assert out.shape == x.shape and out.min() >= 0 and out.max() <= 1
    changed = np.abs(out - x).reshape(64, -1).max(axis=1) > 1e-4
    assert 0 < changed.sum() < 64  # only a fraction (30 %) is transformed
    np.testing.assert_allclose(out[~changed], x[~changed], atol=1e-4)
    assert not np.any(random_affine(tf.constant(x), seed, probability=0.0).numpy() != x)


def test_random_affine_without_shift_keeps_the_centre_of_mass():
    # A square centred on the image centre (13.5, 13.5): zoom and rotation about the centre keep
    # its centre of mass; only the translation moves it.
    x = np.zeros((64, 28, 28, 1), np.float32)
    x[:, 11:17, 11:17] = 1.0
    seed = tf.constant([5, 6], tf.int32)

    def com_offsets(images):
        grid = np.arange(28, dtype=np.float64)
        mass = images[..., 0].sum(axis=(1, 2))
        cy = (images[..., 0].sum(axis=2) * grid).sum(1) / mass
        cx = (images[..., 0].sum(axis=1) * grid).sum(1) / mass
        return np.hypot(cy - 13.5, cx - 13.5)

    still = random_affine(tf.constant(x), seed, probability=1.0, max_shift=0.0).numpy()
    moved = random_affine(tf.constant(x), seed, probability=1.0, max_shift=1.5).numpy()
    assert com_offsets(still).max() < 0.02
    assert com_offsets(moved).max() > 0.5


def test_random_affine_rotates_by_at_most_the_angle():
    x = np.zeros((32, 28, 28, 1), np.float32)
    x[:, 4:24, 13:15] = 1.0  # vertical bar through the centre
    out = random_affine(tf.constant(x), tf.constant([7, 8], tf.int32), probability=1.0, max_zoom=0.0,
                        max_rotation_deg=8.0, max_shift=0.0).numpy()[..., 0]
    rows = np.arange(8, 20)
    com_x = (out[:, rows] * np.arange(28.0)).sum(-1) / out[:, rows].sum(-1)  # [32, rows]
    slopes = np.polyfit(rows, com_x.T, 1)[0]  # horizontal pixels per row, one per image
    assert np.abs(slopes).max() <= np.tan(np.radians(8.0)) + 0.01
    assert np.abs(slopes).max() > np.tan(np.radians(4.0))
    np.testing.assert_allclose(com_x[:, list(rows).index(13)], 13.5, atol=0.6)  # about the centre


# --------------------------------------------------------------------------- train.py

def _env():
    return {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}


# ~30 s of CPU (full MNIST load + one epoch of class 1). Worth it: the only run of the real driver.
def test_train_py_end_to_end(repo_root, mnist_dir, tmp_path):
    out_dir = tmp_path / "run"
    cmd = [sys.executable, str(repo_root / "train.py"), "--model=vae", "--classes=1", "--epochs=1",
           "--batch_size=1024", f"--data_dir={mnist_dir}", f"--out_dir={out_dir}", "--verbose=0"]
    proc = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=300, env=_env())
    assert proc.returncode == 0, proc.stderr[-3000:]
    weights = out_dir / "vae_1.weights.h5"
    assert weights.is_file() and not (out_dir / "vae_0.weights.h5").exists()
    metrics = json.loads((out_dir / "vae_1.json").read_text())
    assert metrics["epochs"] == 1 and math.isfinite(metrics["loss"]) and 0 < metrics["loss"] < 0.3
    config = json.loads((out_dir / "config.json").read_text())
    assert config["batch_size"] == 1024 and config["data_dir"] == str(mnist_dir) and config["beta"] == 1.0
    assert config["command"].endswith("--verbose=0") and "--classes=1" in config["command"]
    summary = json.loads((out_dir / "summary.json").read_text())
    assert summary["results"]["1"]["loss"] == pytest.approx(metrics["loss"])
    assert "epoch/test/loss" in _event_tags(out_dir / "tb" / "class_1")
    assert tf.train.latest_checkpoint(str(out_dir / "ckpt" / "class_1")).endswith("ckpt-1")

    # the same run with another seed is refused, naming it, and leaves the run as it was
    shutil.copy(out_dir / "config.json", tmp_path / "config_before.json")
    proc = subprocess.run(cmd + ["--seed=5"], cwd=tmp_path, capture_output=True, text=True, timeout=300, env=_env())
    assert proc.returncode != 0 and "seed: 0 in the run, 5 now" in proc.stderr, proc.stderr[-2000:]
    assert (out_dir / "config.json").read_bytes() == (tmp_path / "config_before.json").read_bytes()
