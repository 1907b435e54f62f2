"""Binary ABS loss-scaling calibration: recovery of planted scalings, ties, bad input, files."""

from __future__ import annotations

import numpy as np
import pytest

from abs_tf.models.abs import calibration


def _planted(n=3000, seed=0, scalings=None):
    rng = np.random.default_rng(seed)
    losses = rng.uniform(0.01, 0.05, size=(n, 10))
    labels = np.argmin(losses * scalings, axis=1)
    return losses, labels


def test_fit_recovers_a_planted_scaling():
    truth = np.ones(10)
    truth[3] = 0.92
    losses, labels = _planted(scalings=truth)
    assert calibration.scaled_accuracy(losses, labels, np.ones(10)) < 0.99   # the planted scaling matters
    fitted = calibration.fit_class_scalings(losses, labels)
    assert calibration.scaled_accuracy(losses, labels, fitted) == 1.0
    assert abs(fitted[3] - 0.92) <= 0.005
    np.testing.assert_array_equal(np.delete(fitted, 3), 1.0)              # ties go to 1


def test_fit_keeps_ones_when_nothing_helps():
    losses = np.full((50, 10), 0.05)
    labels = np.arange(50) % 10
    losses[np.arange(50), labels] = 0.01                                    # every image right by a wide margin
    np.testing.assert_array_equal(calibration.fit_class_scalings(losses, labels), 1.0)


@pytest.mark.parametrize("losses, labels", [
    (np.ones((5, 9)), np.zeros(5, int)),                                    # wrong number of classes
    (np.ones((5, 10)), np.zeros(4, int)),                                   # length mismatch
    (np.full((5, 10), np.nan), np.zeros(5, int)),
    (-np.ones((5, 10)), np.zeros(5, int)),
    (np.ones((5, 10)), np.full(5, 10)),                                     # label out of range
    (np.ones((0, 10)), np.zeros(0, int)),
])
def test_fit_rejects_bad_input(losses, labels):
    with pytest.raises(ValueError):
        calibration.fit_class_scalings(losses, labels)


def test_choice_takes_the_fit_when_it_generalises_and_ones_when_it_only_overfits():
    truth = np.ones(10)
    truth[3] = 0.92
    losses, labels = _planted(scalings=truth)                               # a real, shared scaling
    chosen = calibration.choose_scalings(losses, labels, {"ones": np.ones(10)})
    assert chosen["choice"] == "fitted" and abs(chosen["scalings"][3] - 0.92) <= 0.005
    assert chosen["held_out_accuracy"]["fitted"] > chosen["held_out_accuracy"]["ones"]
    # Labels that no scaling explains (random): the fit only chases noise, ones are kept.
    rng = np.random.default_rng(1)
    losses = rng.uniform(0.01, 0.05, size=(400, 10))
    labels = np.argmin(losses, 1)
    flip = rng.random(400) < 0.3
    labels[flip] = rng.integers(0, 10, flip.sum())
    chosen = calibration.choose_scalings(losses, labels, {"ones": np.ones(10)})
    assert chosen["choice"] == "ones"
    np.testing.assert_array_equal(chosen["scalings"], 1.0)
    with pytest.raises(ValueError, match="folds"):
        calibration.choose_scalings(losses, labels, {"ones": np.ones(10)}, folds=1)


def test_save_load_round_trip_and_corrupt_file(tmp_path):
    path = tmp_path / calibration.SCALINGS_FILE
    values = np.linspace(0.95, 1.05, 10)
    calibration.save_scalings(path, values, calibrated_on="test")
    np.testing.assert_array_equal(calibration.load_scalings(path), values)
    path.write_text('{"scalings": [1, 2]}')
    with pytest.raises(ValueError, match="binary_scalings.json"):
        calibration.load_scalings(path)
    with pytest.raises(ValueError, match="missing.json"):
        calibration.load_scalings(tmp_path / "missing.json")
    with pytest.raises(ValueError):
        calibration.save_scalings(path, np.zeros(10))
