"""The resumable training loop (abs_tf/training/loop.py), its helpers and seeds
(abs_tf/training/determinism.py): resume, refused configuration changes, damaged checkpoints."""

from __future__ import annotations

import json

import keras
import numpy as np
import pytest
import tensorflow as tf

from abs_tf.training import loop, run_dir
from abs_tf.training.determinism import step_seed


def _event_tags(directory):
    tags = {}
    files = sorted(directory.glob("events.out.tfevents.*"))
    for f in files:
        for event in tf.compat.v1.train.summary_iterator(str(f)):
            for v in event.summary.value:
                tags.setdefault(v.tag, []).append(event.step)
    return files, tags


# --------------------------------------------------------------------------- helpers

def test_epoch_batches():
    batches = loop.epoch_batches(10, 4, seed=0, epoch=0)
    assert [len(b) for b in batches] == [4, 4, 2]  # last partial batch kept
    np.testing.assert_array_equal(np.sort(np.concatenate(batches)), np.arange(10))
    again = loop.epoch_batches(10, 4, seed=0, epoch=0)
    assert all(np.array_equal(a, b) for a, b in zip(batches, again))
    other_epoch = np.concatenate(loop.epoch_batches(10, 4, seed=0, epoch=1))
    other_seed = np.concatenate(loop.epoch_batches(10, 4, seed=1, epoch=0))
    assert not np.array_equal(np.concatenate(batches), other_epoch)
    assert not np.array_equal(np.concatenate(batches), other_seed)


def test_step_seed():
    s = step_seed(7, tf.constant(12, tf.int64))
    assert s.dtype == tf.int32
    np.testing.assert_array_equal(s.numpy(), [7, 12])


def test_image_grid():
    images = np.random.default_rng(0).uniform(size=(10, 28, 28, 1)).astype(np.float32)
    grid = loop.image_grid(images, columns=4)
    assert grid.shape == (1, 3 * 28, 4 * 28, 1)
    np.testing.assert_array_equal(grid[0, 28:56, 28:56], images[5])  # row 1, column 1
    assert np.all(grid[0, 56:, 56:] == 0)  # the unused cells stay empty


# --------------------------------------------------------------------------- fit on a toy model

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

    return model, optimizer, step, lambda e: loop.epoch_batches(32, 8, 0, e)


def _fit(ckpt, epochs=3, seed=0, config=None, **kw):
    model, optimizer, step, batches = _toy(seed)
    result = loop.fit(model=model, optimizer=optimizer, train_step=step, make_batches=batches, epochs=epochs,
                      checkpoint_dir=ckpt, config=config, verbose=0, **kw)
    return model, optimizer, result


class _Killed(Exception):
    pass


def _fit_killed(ckpt, epochs, killed_in_epoch):
    """A run of ``epochs`` killed as epoch ``killed_in_epoch`` (0-based) starts: that many epochs are checkpointed."""
    model, optimizer, step, batches = _toy()

    def make_batches(epoch):
        if epoch == killed_in_epoch:
            raise _Killed()
        return batches(epoch)

    with pytest.raises(_Killed):
        loop.fit(model=model, optimizer=optimizer, train_step=step, make_batches=make_batches, epochs=epochs,
                 checkpoint_dir=ckpt, verbose=0)


def test_fit_checkpoints_resume_and_summaries(tmp_path):
    calls = []
    model, _, result = _fit(tmp_path / "ckpt", summary_dir=tmp_path / "tb",
                            epoch_end=lambda e, w: calls.append(e) or {"test/metric": 10.0 + e})
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
    model2, optimizer2, again = _fit(tmp_path / "ckpt", seed=99)
    assert (again.epochs_run, again.resumed_from_epoch) == (0, 3)
    # the run's history and wall time come back from the checkpoint directory
    assert again.history == result.history and again.train_wall_time_s == result.train_wall_time_s > 0
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
        loop.fit(model=model, optimizer=optimizer, train_step=nan_in_second_epoch, make_batches=batches,
                 epochs=3, checkpoint_dir=tmp_path / "ckpt", verbose=0)
    assert tf.train.latest_checkpoint(str(tmp_path / "ckpt")).endswith("ckpt-1")

    inf_step = lambda idx, s: {"loss": tf.constant(float("inf"))}
    model2, optimizer2, _, _ = _toy()
    with pytest.raises(FloatingPointError, match="epoch 1"):
        loop.fit(model=model2, optimizer=optimizer2, train_step=inf_step, make_batches=batches,
                 epochs=1, checkpoint_dir=tmp_path / "ckpt2", verbose=0)
    assert tf.train.latest_checkpoint(str(tmp_path / "ckpt2")) is None

    # resuming after the failure starts from the intact epoch-1 checkpoint
    _, _, result = _fit(tmp_path / "ckpt")
    assert (result.resumed_from_epoch, result.epochs_run) == (1, 2)


def test_fit_refuses_to_resume_with_another_configuration(tmp_path):
    ckpt = tmp_path / "ckpt"
    _fit(ckpt, epochs=1, config={"batch_size": 8, "beta": 1.0})
    with pytest.raises(run_dir.ConfigMismatchError) as info:
        _fit(ckpt, epochs=2, config={"batch_size": 16, "beta": 1.0})
    message = str(info.value)
    assert "batch_size: 8 in the run, 16 now" in message and "epochs: 1 in the run, 2 now" in message
    assert "beta" not in message and str(ckpt / "run.json") in message
    assert json.loads((ckpt / "run.json").read_text()) == {"batch_size": 8, "beta": 1.0, "epochs": 1}
    _, _, result = _fit(ckpt, epochs=1, config={"batch_size": 8, "beta": 1.0})  # the same one resumes
    assert result.resumed_from_epoch == 1


# --------------------------------------------------------------------------- damaged checkpoints

def _damage(ckpt, how):
    if how == "truncated_data":
        (data,) = ckpt.glob("ckpt-2.data-*")
        data.write_bytes(data.read_bytes()[: data.stat().st_size // 2])
        return data.name
    if how == "empty_index":
        (ckpt / "ckpt-2.index").write_bytes(b"")
        return "ckpt-2.index"
    (ckpt / "checkpoint").write_text("garbage }{ not a checkpoint state\n")
    return "checkpoint"


@pytest.mark.parametrize("how", ["truncated_data", "empty_index", "garbage_state_file"])
def test_fit_falls_back_to_the_newest_intact_checkpoint(tmp_path, how):
    """Killed after epoch 2 of 3, newest checkpoint damaged: named, and training resumes from
    the intact one (epoch 1, or epoch 2 when only the state file is damaged) to the same weights
    as an uninterrupted run."""
    straight, _, _ = _fit(tmp_path / "straight", epochs=3)
    ckpt = tmp_path / "ckpt"
    _fit_killed(ckpt, epochs=3, killed_in_epoch=2)
    damaged = _damage(ckpt, how)
    with pytest.warns(loop.CheckpointWarning) as caught:
        model, _, result = _fit(ckpt, epochs=3)
    messages = " | ".join(str(w.message) for w in caught)
    assert damaged in messages, messages
    if how == "garbage_state_file":
        assert result.resumed_from_epoch == 2  # both checkpoints intact: the newest is used
    else:
        assert result.resumed_from_epoch == 1 and "resuming from" in messages and "ckpt-1" in messages
    assert result.epochs_run == 3 - result.resumed_from_epoch
    assert len(result.history["train/loss"]) == 3  # the epochs before the kill are still in the history
    for a, b in zip(straight.weights, model.weights):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    assert tf.train.latest_checkpoint(str(ckpt)).endswith("ckpt-3")  # the state file is readable again


def test_fit_without_any_intact_checkpoint_names_them(tmp_path):
    ckpt = tmp_path / "ckpt"
    _fit_killed(ckpt, epochs=3, killed_in_epoch=2)
    for index in ckpt.glob("ckpt-*.index"):
        index.write_bytes(b"")
    with pytest.warns(loop.CheckpointWarning), pytest.raises(RuntimeError, match=r"no checkpoint .* can be read"):
        _fit(ckpt, epochs=3)
