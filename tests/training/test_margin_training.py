"""The class-margin fine-tuning of the decoders (abs_tf/training/margin.py) and
train.py --model=vae --fine_tune=class_margin."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from abs_tf.models.abs.model import ABS, latent_samples
from abs_tf.training import margin as margin_training
from abs_tf.models.abs import vae_weights
from abs_tf.training.config import MarginFineTuneConfig
from abs_tf.training.determinism import seed_globals


def test_margin_loss_known_values():
    losses = tf.constant([[0.010, 0.020, 0.030] + [1.0] * 7,      # true class 0 wins by 0.01
                          [0.020, 0.020, 0.050] + [1.0] * 7,      # tie with class 1: an error
                          [0.030, 0.050, 0.010] + [1.0] * 7])     # class 2 wins: an error
    labels = tf.constant([0, 1, 0])
    alpha = 100.0
    loss, violations = margin_training.margin_loss(losses, labels, alpha)
    others = [np.exp(alpha * (0.010 - 0.020)) + np.exp(alpha * (0.010 - 0.030)),
              np.exp(0.0) + np.exp(alpha * (0.020 - 0.050)),
              np.exp(alpha * (0.030 - 0.050)) + np.exp(alpha * (0.030 - 0.010))]
    others = [o + 7 * np.exp(alpha * (own - 1.0)) for o, own in zip(others, [0.010, 0.020, 0.030])]
    np.testing.assert_allclose(loss.numpy(), np.log1p(others), rtol=1e-5)
    np.testing.assert_array_equal(violations.numpy(), [0.0, 1.0, 1.0])


@pytest.fixture(scope="module")
def shipped_vaes(repo_root):
    return vae_weights.load_vaes(repo_root / "weights" / "abs_vae")


def test_class_losses_equal_the_search_models_losses(shipped_vaes, mnist_test):
    """The Keras-decoder losses used for training are the losses ABS's fast decoder stack computes."""
    images = tf.constant(mnist_test[0][:6])
    latents = tf.random.stateless_normal([6, 10, 8], seed=[3, 4]) * 1.5
    model = ABS([v.decoder for v in shipped_vaes], latent_samples(50), n_steps=1)
    expected, _ = model._losses(images, latents)
    got = margin_training.class_losses([v.decoder for v in shipped_vaes], images, latents)
    np.testing.assert_allclose(got.numpy(), expected.numpy(), rtol=1e-5, atol=1e-7)


def _mean_margin(vaes, x, y, alpha):
    model = ABS([v.decoder for v in vaes], latent_samples(100), n_steps=3)
    z = model.search(tf.constant(x))["latents"]
    loss, _ = margin_training.margin_loss(margin_training.class_losses([v.decoder for v in vaes], x, z), y, alpha)
    return float(tf.reduce_mean(loss))


def test_fine_tune_lowers_the_margin_loss_and_resumes(repo_root, mnist_train, tmp_path):
    (x, y) = mnist_train
    x, y = np.array(x[:400]), np.array(y[:400], np.int64)
    vaes = vae_weights.load_vaes(repo_root / "weights" / "abs_vae")
    encoder_before = [w.copy() for w in vaes[3].encoder.get_weights()]
    pool, ratios = margin_training.confusable_pool(ABS([v.decoder for v in vaes], latent_samples(100), n_steps=1),
                                                   x, y, ratio=1.6)
    assert len(pool) > 10 and np.all(ratios[pool] < 1.6)
    before = _mean_margin(vaes, x[pool], y[pool], alpha=1000.0)
    seed_globals(0)
    config = MarginFineTuneConfig(init_from=str(repo_root / "weights" / "abs_vae"), epochs=2, batch_size=32,
                                  learning_rate=3e-4, margin_pool_ratio=1.6, margin_search_samples=100,
                                  margin_search_steps=3, margin_refresh=4)
    metrics = margin_training.fine_tune_margin(vaes, x, y, out_dir=tmp_path, config=config, verbose=0)
    assert metrics["pool_size"] == len(pool)
    np.testing.assert_array_equal(np.load(tmp_path / "margin_pool.npy"), pool)
    after = _mean_margin(vaes, x[pool], y[pool], alpha=1000.0)
    assert after < 0.9 * before, (before, after)
    for a, b in zip(encoder_before, vaes[3].encoder.get_weights()):   # encoders are not trained
        np.testing.assert_array_equal(a, b)
    # A second call on the finished run trains nothing and leaves the decoders as they are.
    tuned = [w.copy() for w in vaes[3].decoder.get_weights()]
    fresh = vae_weights.load_vaes(repo_root / "weights" / "abs_vae")
    again = margin_training.fine_tune_margin(fresh, x, y, out_dir=tmp_path, config=config, verbose=0)
    # ... and keeps the recorded per-epoch history.
    assert again["resumed_from_epoch"] == 2 and again["history"] == metrics["history"]
    assert len(metrics["history"]["train/margin_loss"]) == 2
    for a, b in zip(tuned, fresh[3].decoder.get_weights()):
        np.testing.assert_allclose(a, b)


def test_fine_tune_needs_the_ten_vaes(shipped_vaes, tmp_path):
    x = np.zeros([4, 28, 28, 1], np.float32)
    with pytest.raises(ValueError, match="10 class VAEs"):
        margin_training.fine_tune_margin(shipped_vaes[:3], x, np.zeros(4, np.int64), out_dir=tmp_path,
                                         config=MarginFineTuneConfig(init_from="d"))


def test_train_py_class_margin_writes_ten_vaes(repo_root, mnist_dir, tmp_path):
    env = dict(os.environ, ABS_TF_DATA_DIR=str(mnist_dir))
    proc = subprocess.run([sys.executable, str(repo_root / "train.py"), "--model=vae", "--fine_tune=class_margin",
                           f"--init_from={repo_root / 'weights' / 'abs_vae'}", "--train_images=300",
                           "--margin_search_samples=50", "--margin_search_steps=2", "--batch_size=32",
                           f"--out_dir={tmp_path}", "--verbose=0"], capture_output=True, text=True, env=env,
                          cwd=repo_root, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["fine_tune"] == "class_margin" and config["margin_alpha"] == 1000.0
    assert config["margin_search_samples"] == 50 and config["train_images"] == 300
    assert json.loads((tmp_path / "vae_4.json").read_text())["fine_tune"] == "class_margin"
    vaes = vae_weights.load_vaes(tmp_path)          # all ten load, each stamped with its class
    shipped = vae_weights.load_vaes(repo_root / "weights" / "abs_vae", classes=[0])
    moved = any(not np.allclose(a, b) for a, b in zip(vaes[0].decoder.get_weights(), shipped[0].decoder.get_weights()))
    assert moved
