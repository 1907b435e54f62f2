"""Training the baselines (abs_tf/training/classifier.py), adversarial training and its robust
accuracy (abs_tf/training/adversarial.py), classifier runs (abs_tf/training/run.py) and shipping
them (abs_tf/training/provenance.py)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from abs_tf.models import cnn, weights_identity
from abs_tf.training import adversarial, classifier, loop, run, run_dir
from abs_tf.training.config import classifier_config
from abs_tf.training.determinism import seed_globals
from abs_tf.training.provenance import write_provenance


# --------------------------------------------------------------------------- adversarial examples

def test_adversarial_batches_stay_in_the_eps_ball_and_follow_the_seed(mnist_test_small):
    x, y = (tf.constant(a[:16]) for a in mnist_test_small)
    model = cnn.ImageClassifier("madry")
    attack = adversarial.pgd(eps=0.3, step_size=0.1, steps=3)
    step = tf.function(lambda images, labels, seed: adversarial.adversarial_batch(attack, model, images, labels,
                                                                                   0.3, seed))
    adv = step(x, y, tf.constant(5)).numpy()
    assert adv.min() >= 0.0 and adv.max() <= 1.0
    assert np.abs(adv - x.numpy()).max() <= 0.3 + 1e-6
    assert np.abs(adv - x.numpy()).max() > 0.2  # it did move
    np.testing.assert_array_equal(step(x, y, tf.constant(5)).numpy(), adv)  # the seed fixes the random start
    assert not np.array_equal(step(x, y, tf.constant(6)).numpy(), adv)
    # the loss rises: these are adversarial directions, not noise
    loss = lambda images: float(tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(y, model(images))))
    assert loss(adv) > loss(x)
    with pytest.raises(ValueError, match="step_size <= eps"):
        adversarial.pgd(eps=0.3, step_size=0.5, steps=10)


@pytest.fixture(scope="module")
def trained_substitute(mnist_train, mnist_test_small, tmp_path_factory):
    """A substitute CNN trained for one epoch on 600 images (and its record)."""
    (xtr, ytr), (xte, yte) = mnist_train, mnist_test_small
    return _train(((xtr[:600], ytr[:600]), (xte, yte)), tmp_path_factory.mktemp("substitute"), "substitute", 1)


def test_training_learns(trained_substitute):
    _, metrics = trained_substitute
    assert metrics["test_accuracy"] > 0.6 and metrics["history"]["train/loss"][0] < 2.3


def test_robust_accuracy_uses_the_verified_attack(trained_substitute, mnist_test_small):
    """A clean model loses most of its accuracy to PGD at eps 0.3 but none at a negligible eps
    (where robust == correctly classified, counted by the attack's verifier); more restarts
    never help the model; the seed fixes the figure."""
    model, _ = trained_substitute
    x, y = mnist_test_small[0][:60], mnist_test_small[1][:60]
    clean = cnn.accuracy(model, x, y)
    assert clean > 0.6
    assert adversarial.robust_accuracy(model, x, y, eps=1e-4, step_size=1e-4, steps=1) == pytest.approx(clean)
    one = adversarial.robust_accuracy(model, x, y, steps=10, step_size=0.05, seed=1)
    assert one < 0.5 * clean
    assert adversarial.robust_accuracy(model, x, y, steps=10, step_size=0.05, seed=1) == one
    assert adversarial.robust_accuracy(model, x, y, steps=10, step_size=0.05, restarts=3, seed=1) <= one


# --------------------------------------------------------------------------- training and resume

def _train(data, out_dir, architecture, epochs, adversarial_training=False):
    (xtr, ytr), (xte, yte) = data
    config = classifier_config(
        {"abs_cnn": "cnn", "madry": "madry", "substitute": "substitute"}[architecture], epochs=epochs, batch_size=20,
        learning_rate=1e-3, schedule="triangular" if adversarial_training else "cosine", seed=3,
        adversarial=adversarial_training, adv_steps=2, augment=not adversarial_training, monitor_images=0)
    seed_globals(config.seed)
    model = cnn.ImageClassifier(architecture)
    return model, classifier.train_classifier(model, xtr, ytr, xte, yte, out_dir=out_dir, config=config, verbose=0)


@pytest.mark.parametrize("architecture,adversarial_training", [
    ("abs_cnn", False),  # with BatchNorm and the random augmentation
    ("madry", True),     # PGD adversarial training: the random starts must follow (seed, step)
], ids=["clean", "pgd"])
def test_interrupted_training_resumes_to_identical_weights(mnist_test_small, tmp_path, monkeypatch,
                                                           architecture, adversarial_training):
    x, y = mnist_test_small
    data = ((x[:40], y[:40]), (x[40:60], y[40:60]))
    full, full_metrics = _train(data, tmp_path / "full", architecture, 2, adversarial_training)

    real_fit = loop.fit

    def killed_after_first_epoch(**kw):
        def make_batches(epoch):
            if epoch == 1:
                raise KeyboardInterrupt  # the kill, after epoch 1 was checkpointed
            return kw["make_batches"](epoch)
        return real_fit(**{**kw, "make_batches": make_batches})

    with monkeypatch.context() as m:
        m.setattr(classifier.loop, "fit", killed_after_first_epoch)
        with pytest.raises(KeyboardInterrupt):
            _train(data, tmp_path / "cut", architecture, 2, adversarial_training)
    assert not (tmp_path / "cut" / cnn.WEIGHTS_FILE).exists()
    resumed, resumed_metrics = _train(data, tmp_path / "cut", architecture, 2, adversarial_training)

    assert resumed_metrics["resumed_from_epoch"] == 1 and full_metrics["resumed_from_epoch"] == 0
    for a, b in zip(full.weights, resumed.weights):
        np.testing.assert_array_equal(a.numpy(), b.numpy(), err_msg=a.path)
    assert full_metrics["test_accuracy"] == resumed_metrics["test_accuracy"]
    assert full_metrics["history"] == resumed_metrics["history"]
    assert weights_identity.read(tmp_path / "cut" / cnn.WEIGHTS_FILE) == {
        "model": "madry" if architecture == "madry" else "cnn", "architecture": architecture}


def test_triangular_schedule_shape():
    s = classifier.TriangularSchedule(5e-3, total_steps=100)
    lr = np.array([float(s(t)) for t in range(100)])
    assert lr.argmax() == 39 and lr.max() == pytest.approx(5e-3) and lr[0] < 2e-4 and lr[-1] == 0.0
    with pytest.raises(ValueError, match="unknown schedule"):
        classifier.make_schedule("step", 1e-3, 10)


# --------------------------------------------------------------------------- runs and train.py

def test_classifier_run_init_from_checks_the_weights_identity(mnist_dir, tmp_path):
    binary = tmp_path / "binary"
    binary.mkdir()
    classifier.save_classifier_weights(cnn.ImageClassifier("abs_cnn", binary=True), binary / cnn.WEIGHTS_FILE,
                                       "binary_cnn")
    config = classifier_config("cnn", epochs=1, train_images=100, init_from=str(binary))
    with pytest.raises(weights_identity.WeightsIdentityError, match="binary_cnn"):
        run.train_classifier_run(config, tmp_path / "run", mnist_dir, verbose=0)
    with pytest.raises(FileNotFoundError, match="no weights file"):
        run.train_classifier_run(classifier_config("cnn", epochs=1, train_images=100, init_from=str(tmp_path / "no")),
                                 tmp_path / "run2", mnist_dir, verbose=0)


@pytest.mark.slow  # ~30 s of CPU: evaluates the full test set twice
def test_train_py_trains_madry_end_to_end(repo_root, mnist_dir, tmp_path):
    out_dir = tmp_path / "run"
    cmd = [sys.executable, str(repo_root / "train.py"), "--model=madry", "--train_images=100", "--epochs=1",
           "--batch_size=50", f"--data_dir={mnist_dir}", f"--out_dir={out_dir}", "--verbose=0"]
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    proc = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=600, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    metrics = json.loads((out_dir / "metrics.json").read_text())
    assert 0 <= metrics["pgd40_accuracy_first1000"] <= 1 and 0 < metrics["test_accuracy"] <= 1
    config = json.loads((out_dir / "config.json").read_text())
    assert (config["adversarial"], config["adv_steps"], config["adv_step_size"]) == (True, 4, 0.1)
    assert config["train_images"] == 100 and config["robust_eval_images"] == 1000
    assert (out_dir / cnn.WEIGHTS_FILE).is_file()
    assert tf.train.latest_checkpoint(str(out_dir / "ckpt")).endswith("ckpt-1")
    assert list((out_dir / "tb").glob("events.out.tfevents.*"))


def test_write_provenance_ships_a_run(tmp_path):
    run_path = tmp_path / "run"
    run_path.mkdir()
    cnn.ImageClassifier("substitute").save_weights(run_path / cnn.WEIGHTS_FILE)
    run_dir.write_json(run_path / classifier.METRICS_FILE, {
        "test_accuracy": 0.99123, "test_accuracy_first1000": 0.987, "train_wall_time_s": 600.0,
        "pgd40_accuracy_first1000": 0.9})
    run_dir.write_json(run_path / run_dir.CONFIG_FILE, {
        "command": "python train.py --model=substitute", "git_commit": "abc123", "seed": 1, "epochs": 3,
        "batch_size": 100, "learning_rate": 1e-3, "schedule": "cosine", "augment": False})
    path = write_provenance(run_path, tmp_path / "weights" / "substitute", notes="Extra note.")
    text = path.read_text()
    for expected in ("python train.py --model=substitute", "abc123", "Seed 1", "augmentation off", "10.0 min", "99.1 %",
                     "98.7 %", "`pgd40_accuracy_first1000`", "90.0 %", "Extra note."):
        assert expected in text, expected
    shipped = json.loads((path.parent / "metrics.json").read_text())
    assert shipped["test_accuracy_first1000"] == 0.987 and shipped["train_config"]["seed"] == 1
    assert (path.parent / cnn.WEIGHTS_FILE).is_file()
    assert "Fine-tuned" not in text
    # a fine-tuning run names the weights it started from
    config = json.loads((run_path / run_dir.CONFIG_FILE).read_text())
    run_dir.write_json(run_path / run_dir.CONFIG_FILE, dict(config, init_from="weights/substitute"))
    text = write_provenance(run_path, tmp_path / "weights" / "substitute2").read_text()
    assert "Fine-tuned from the weights in `weights/substitute`" in text
