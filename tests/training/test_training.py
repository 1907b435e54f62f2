"""The training loop (abs_tf/training.py), the class-VAE trainer (abs_tf/vae_training.py) and train.py."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf

from abs_tf.training import loop as training
from abs_tf.training import vae as vae_training
from abs_tf.models.abs.vae import build_vae

CLASS_ID = 3
SEED = 1


@pytest.fixture(scope="module")
def class_data(mnist_train, mnist_test):
    """256 training and 100 test images of one class."""
    (xtr, ytr), (xte, yte) = mnist_train, mnist_test
    return np.array(xtr[ytr == CLASS_ID][:256]), np.array(xte[yte == CLASS_ID][:100])


def _train(class_data, out_dir, epochs, augment=True):
    training.set_global_determinism(SEED)
    train_x, test_x = class_data
    return vae_training.train_class_vae(train_x, test_x, class_id=CLASS_ID, out_dir=out_dir, epochs=epochs,
                                        batch_size=64, seed=SEED, augment=augment, verbose=0)


def _event_tags(directory):
    tags = {}
    files = sorted(directory.glob("events.out.tfevents.*"))
    for f in files:
        for event in tf.compat.v1.train.summary_iterator(str(f)):
            for v in event.summary.value:
                tags.setdefault(v.tag, []).append(event.step)
    return files, tags


# --------------------------------------------------------------------------- helpers of training.py

def test_epoch_batches():
    batches = training.epoch_batches(10, 4, seed=0, epoch=0)
    assert [len(b) for b in batches] == [4, 4, 2]  # last partial batch kept
    np.testing.assert_array_equal(np.sort(np.concatenate(batches)), np.arange(10))
    again = training.epoch_batches(10, 4, seed=0, epoch=0)
    assert all(np.array_equal(a, b) for a, b in zip(batches, again))
    other_epoch = np.concatenate(training.epoch_batches(10, 4, seed=0, epoch=1))
    other_seed = np.concatenate(training.epoch_batches(10, 4, seed=1, epoch=0))
    assert not np.array_equal(np.concatenate(batches), other_epoch)
    assert not np.array_equal(np.concatenate(batches), other_seed)


def test_step_seed():
    s = training.step_seed(7, tf.constant(12, tf.int64))
    assert s.dtype == tf.int32
    np.testing.assert_array_equal(s.numpy(), [7, 12])


def test_image_grid():
    images = np.random.default_rng(0).uniform(size=(10, 28, 28, 1)).astype(np.float32)
    grid = training.image_grid(images, columns=4)
    assert grid.shape == (1, 3 * 28, 4 * 28, 1)
    np.testing.assert_array_equal(grid[0, 28:56, 28:56], images[5])  # row 1, column 1
    assert np.all(grid[0, 56:, 56:] == 0)  # the unused cells stay empty


# --------------------------------------------------------------------------- training.fit on a toy model

def _toy(seed=0):
    keras.utils.set_random_seed(seed)
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)])
    optimizer = keras.optimizers.SGD(0.1)
    optimizer.build(model.trainable_variables)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(32, 3)).astype(np.float32)
    y = x @ np.array([[1.0], [-2.0], [0.5]], np.float32)

    @tf.function
    def step(idx, global_step):
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean(tf.square(model(tf.gather(x, idx)) - tf.gather(y, idx)))
        grads = tape.gradient(loss, model.trainable_variables)
        optimizer.apply_gradients(zip(grads, model.trainable_variables))
        return {"loss": loss}

    return model, optimizer, step, lambda e: training.epoch_batches(32, 8, 0, e)


def test_fit_checkpoints_resume_and_summaries(tmp_path):
    model, optimizer, step, batches = _toy()
    calls = []
    result = training.fit(model=model, optimizer=optimizer, train_step=step, make_batches=batches, epochs=3,
                          checkpoint_dir=tmp_path / "ckpt", summary_dir=tmp_path / "tb",
                          epoch_end=lambda e, w: calls.append(e) or {"test/metric": 10.0 + e}, verbose=0)
    assert (result.epochs_run, result.resumed_from_epoch) == (3, 0)
    assert calls == [0, 1, 2]
    assert result.history["test/metric"] == [10.0, 11.0, 12.0]
    losses = result.history["train/loss"]
    assert len(losses) == 3 and losses[2] < losses[0]
    assert tf.train.latest_checkpoint(str(tmp_path / "ckpt")).endswith("ckpt-3")
    files, tags = _event_tags(tmp_path / "tb")
    assert files, "no TensorBoard event file written"
    assert tags["epoch/train/loss"] == [1, 2, 3] and tags["epoch/test/metric"] == [1, 2, 3]
    weights = [w.numpy() for w in model.weights]

    # a new process' objects, same command: nothing left to do, the weights come from the checkpoint
    model2, optimizer2, step2, _ = _toy(seed=99)
    again = training.fit(model=model2, optimizer=optimizer2, train_step=step2, make_batches=batches, epochs=3,
                         checkpoint_dir=tmp_path / "ckpt", verbose=0)
    assert (again.epochs_run, again.resumed_from_epoch, again.history) == (0, 3, {})
    for a, b in zip(weights, model2.weights):
        np.testing.assert_array_equal(a, b.numpy())
    assert int(optimizer2.iterations.numpy()) == 12


def test_fit_non_finite_metric_raises_and_keeps_last_checkpoint(tmp_path):
    model, optimizer, step, batches = _toy()

    def nan_in_second_epoch(idx, global_step):
        out = step(idx, global_step)
        if int(global_step.numpy()) >= 5:  # epoch 2 of 4 steps each
            out = {"loss": out["loss"], "rate": tf.constant(float("nan"))}
        return out

    with pytest.raises(FloatingPointError, match=r"non-finite training metrics at epoch 2.*rate.*nan"):
        training.fit(model=model, optimizer=optimizer, train_step=nan_in_second_epoch, make_batches=batches,
                     epochs=3, checkpoint_dir=tmp_path / "ckpt", verbose=0)
    assert tf.train.latest_checkpoint(str(tmp_path / "ckpt")).endswith("ckpt-1")

    inf_step = lambda idx, s: {"loss": tf.constant(float("inf"))}
    model2, optimizer2, _, _ = _toy()
    with pytest.raises(FloatingPointError, match="epoch 1"):
        training.fit(model=model2, optimizer=optimizer2, train_step=inf_step, make_batches=batches,
                     epochs=1, checkpoint_dir=tmp_path / "ckpt2", verbose=0)
    assert tf.train.latest_checkpoint(str(tmp_path / "ckpt2")) is None

    # resuming after the failure starts from the intact epoch-1 checkpoint
    model3, optimizer3, step3, _ = _toy()
    result = training.fit(model=model3, optimizer=optimizer3, train_step=step3, make_batches=batches, epochs=3,
                          checkpoint_dir=tmp_path / "ckpt", verbose=0)
    assert (result.resumed_from_epoch, result.epochs_run) == (1, 2)


# --------------------------------------------------------------------------- the class-VAE trainer

def test_train_class_vae_lowers_test_loss(class_data, tmp_path):
    train_x, test_x = class_data
    keras.utils.set_random_seed(SEED * 100 + CLASS_ID)  # the initialisation train_class_vae starts from
    untrained = vae_training.evaluate_vae(build_vae(), test_x)
    vae, metrics = _train(class_data, tmp_path, epochs=3, augment=False)
    assert metrics["loss"] < 0.8 * untrained["loss"], (metrics, untrained)
    assert metrics["reconstruction_mse"] < untrained["reconstruction_mse"]
    assert metrics["epochs"] == 3 and metrics["class_id"] == CLASS_ID and metrics["resumed_from_epoch"] == 0
    assert json.loads((tmp_path / f"vae_{CLASS_ID}.json").read_text())["loss"] == pytest.approx(metrics["loss"])

    # the saved weights round-trip through load_vaes
    (loaded,) = vae_training.load_vaes(tmp_path, classes=[CLASS_ID])
    for a, b in zip(vae.weights, loaded.weights):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    assert vae_training.evaluate_vae(loaded, test_x)["loss"] == pytest.approx(metrics["loss"], rel=1e-6)

    # TensorBoard: per-step/epoch scalars and the reconstruction image
    files, tags = _event_tags(tmp_path / "tb" / f"class_{CLASS_ID}")
    assert files
    assert tags["epoch/test/loss"] == [1, 2, 3] and tags["epoch/train/loss"] == [1, 2, 3]
    assert any(t.startswith("reconstructions/") for t in tags)


def test_train_class_vae_map_fine_tuning_starts_from_init_weights(class_data, tmp_path):
    """--init_from + the map objective: starts at the given weights and lowers the ABS loss."""
    train_x, test_x = class_data
    first, first_metrics = _train(class_data, tmp_path / "first", epochs=1, augment=False)
    init = tmp_path / "first" / f"vae_{CLASS_ID}.weights.h5"
    training.set_global_determinism(SEED)
    tuned, metrics = vae_training.train_class_vae(
        train_x, test_x, class_id=CLASS_ID, out_dir=tmp_path / "tuned", epochs=2, batch_size=64, seed=SEED,
        augment=False, objective="map", init_weights=init, learning_rate=1e-3, verbose=0)
    assert metrics["loss"] < first_metrics["loss"], (metrics, first_metrics)
    # it really started from `init`: a run from scratch with the same recipe ends elsewhere and worse
    training.set_global_determinism(SEED)
    _, scratch = vae_training.train_class_vae(
        train_x, test_x, class_id=CLASS_ID, out_dir=tmp_path / "scratch", epochs=2, batch_size=64, seed=SEED,
        augment=False, objective="map", learning_rate=1e-3, verbose=0)
    assert metrics["loss"] < scratch["loss"]
    with pytest.raises(FileNotFoundError, match="not found"):
        vae_training.train_class_vae(train_x, test_x, class_id=CLASS_ID, out_dir=tmp_path / "missing", epochs=1,
                                     init_weights=tmp_path / "nope.weights.h5", verbose=0)


class _Killed(Exception):
    pass


def test_train_class_vae_resume_is_exact(class_data, tmp_path, monkeypatch):
    """Killed after epoch 1 of 2 and run again == one uninterrupted 2-epoch run (augmentation on)."""
    real_epoch_batches = training.epoch_batches

    def killed_in_epoch_2(num, batch_size, seed, epoch):
        if epoch == 1:
            raise _Killed()
        return real_epoch_batches(num, batch_size, seed, epoch)

    monkeypatch.setattr(training, "epoch_batches", killed_in_epoch_2)
    with pytest.raises(_Killed):
        _train(class_data, tmp_path / "a", epochs=2)
    monkeypatch.setattr(training, "epoch_batches", real_epoch_batches)
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
    # the run did move away from the initialisation (so the comparison above means something)
    keras.utils.set_random_seed(SEED * 100 + CLASS_ID)
    init = build_vae()
    assert max(float(np.abs(a.numpy() - b.numpy()).max()) for a, b in zip(init.weights, straight.weights)) > 1e-3


def test_random_affine():
    x = np.zeros((64, 28, 28, 1), np.float32)
    x[:, 10:18, 12:16] = 1.0
    seed = tf.constant([3, 4], tf.int32)
    out = vae_training.random_affine(tf.constant(x), seed).numpy()
    np.testing.assert_array_equal(out, vae_training.random_affine(tf.constant(x), seed).numpy())
    assert out.shape == x.shape and out.min() >= 0 and out.max() <= 1
    changed = np.abs(out - x).reshape(64, -1).max(axis=1) > 1e-4
    assert 0 < changed.sum() < 64  # only a fraction (30 %) is transformed
    np.testing.assert_allclose(out[~changed], x[~changed], atol=1e-4)
    assert not np.any(vae_training.random_affine(tf.constant(x), seed, probability=0.0).numpy() != x)


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

    still = vae_training.random_affine(tf.constant(x), seed, probability=1.0, max_shift=0.0).numpy()
    moved = vae_training.random_affine(tf.constant(x), seed, probability=1.0, max_shift=1.5).numpy()
    assert com_offsets(still).max() < 0.02
    assert com_offsets(moved).max() > 0.5


def test_random_affine_shear_slants_a_vertical_bar_by_at_most_the_angle():
    x = np.zeros((32, 28, 28, 1), np.float32)
    x[:, 4:24, 13:15] = 1.0  # vertical bar through the centre
    out = vae_training.random_affine(tf.constant(x), tf.constant([7, 8], tf.int32), probability=1.0, max_zoom=0.0,
                                     max_rotation_deg=0.0, max_shift=0.0, max_shear_deg=20.0).numpy()[..., 0]
    rows = np.arange(8, 20)
    cols = np.arange(28.0)
    com_x = (out[:, rows] * cols).sum(-1) / out[:, rows].sum(-1)  # [32, rows]
    slopes = np.polyfit(rows, com_x.T, 1)[0]  # horizontal pixels per row, one per image
    assert np.abs(slopes).max() <= np.tan(np.radians(20.0)) + 0.01
    assert np.abs(slopes).max() > np.tan(np.radians(8.0))
    # the shear is about the image centre: the bar's middle row stays put
    np.testing.assert_allclose(com_x[:, list(rows).index(13)], 13.5, atol=0.6)


def test_warp_by_a_constant_displacement_is_a_shift_with_zero_fill():
    x = np.random.default_rng(0).random((3, 28, 28, 1)).astype(np.float32)
    shift = np.zeros((3, 28, 28, 2), np.float32)
    shift[..., 1] = 2.0  # dx = 2: out[y, x] = x[y, x + 2]
    out = vae_training.warp(tf.constant(x), tf.constant(shift)).numpy()
    np.testing.assert_allclose(out[:, :, :26], x[:, :, 2:], atol=1e-6)
    np.testing.assert_array_equal(out[:, :, 26:], 0.0)
    half = np.zeros_like(shift)
    half[..., 0] = -0.5  # dy = -1/2: the mean of the pixel and the one above (zero above row 0)
    out = vae_training.warp(tf.constant(x), tf.constant(half)).numpy()
    np.testing.assert_allclose(out[:, 1:], (x[:, 1:] + x[:, :-1]) / 2, atol=1e-6)
    np.testing.assert_allclose(out[:, 0], x[:, 0] / 2, atol=1e-6)


def test_random_elastic_moves_pixels_by_at_most_the_magnitude():
    x = np.zeros((32, 28, 28, 1), np.float32)
    x[:, 14, 14] = 1.0
    seed = tf.constant([1, 2], tf.int32)
    out = vae_training.random_elastic(tf.constant(x), seed, probability=1.0, magnitude=1.0).numpy()
    np.testing.assert_array_equal(out, vae_training.random_elastic(tf.constant(x), seed, probability=1.0,
                                                                   magnitude=1.0).numpy())
    assert out.min() >= 0 and out.max() <= 1
    assert np.abs(out - x).max() > 0.1  # it does distort
    ys, xs = np.nonzero(out[..., 0].max(axis=0) > 0)
    assert ys.min() >= 13 and ys.max() <= 15 and xs.min() >= 13 and xs.max() <= 15  # |p - 14| < 1 + 1 px
    kept = vae_training.random_elastic(tf.constant(x), seed, probability=0.0).numpy()
    np.testing.assert_array_equal(kept, x)


# --------------------------------------------------------------------------- train.py

def _env():
    env = dict(os.environ)
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    return env


def test_train_py_helpfull_lists_flags(repo_root):
    out = subprocess.run([sys.executable, str(repo_root / "train.py"), "--helpfull"], cwd=repo_root,
                         capture_output=True, text=True, timeout=120, env=_env())
    text = out.stdout + out.stderr
    for flag in ("model", "classes", "epochs", "batch_size", "learning_rate", "beta", "augment", "seed",
                 "data_dir", "out_dir"):
        assert f"--{flag}" in text or f"--[no]{flag}" in text, flag


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
    assert config["classes"] == ["1"] and config["batch_size"] == 1024 and config["data_dir"] == str(mnist_dir)
    summary = json.loads((out_dir / "summary.json").read_text())
    assert summary["results"]["1"]["loss"] == pytest.approx(metrics["loss"])
    files, tags = _event_tags(out_dir / "tb" / "class_1")
    assert files and "epoch/test/loss" in tags
    assert tf.train.latest_checkpoint(str(out_dir / "ckpt" / "class_1")).endswith("ckpt-1")


def test_train_py_rejects_bad_flags(repo_root, tmp_path):
    proc = subprocess.run([sys.executable, str(repo_root / "train.py"), "--classes=1,12",
                           f"--out_dir={tmp_path / 'x'}"], cwd=tmp_path, capture_output=True, text=True,
                          timeout=120, env=_env())
    assert proc.returncode != 0 and "--classes must be distinct digits 0..9" in proc.stderr
    assert not (tmp_path / "x").exists()


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
    # the training objective itself does use the training beta
    assert float(tf.reduce_mean(low_beta.mean_reconstruction_loss(x))) < float(tf.reduce_mean(expected))
