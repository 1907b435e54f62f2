"""Attacks on the project's own models: gradient masking is found, not reported as robustness;
gradient-free attacks run on every kind of model (their probes stay in [0, 1])."""

import numpy as np
import pytest
import tensorflow as tf

from abs_tf import attacks, registry


@pytest.fixture(scope="module")
def test_images(mnist_test):
    images, labels = mnist_test
    return images[:4], labels[:4]


@pytest.fixture(scope="module")
def tiny_abs():
    """ABS with random decoders, 100 latent samples and 3 search steps (cheap; not accurate)."""
    from abs_tf.models.abs.model import ABS, latent_samples
    from abs_tf.models.abs.vae import build_decoder
    tf.keras.utils.set_random_seed(5)
    return ABS([build_decoder() for _ in range(10)], latent_samples(100), n_steps=3)


def test_binary_cnn_is_broken_through_its_declared_front_end(test_images):
    model = registry.load_model("binary_cnn")
    x, y = test_images
    assert np.all(np.argmax(model(x).numpy(), 1) == y)
    plain = attacks.PGD(norm="linf", steps=10)(model, x, y, epsilons=[0.5])
    assert plain.no_gradient.all() and plain.robust_accuracy[0] == 0.0  # masked: failed, not robust
    st = attacks.StraightThrough(model)
    np.testing.assert_allclose(st(x).numpy(), model(x).numpy(), rtol=1e-5, atol=1e-5)  # its own decision
    broken = attacks.PGD(norm="linf")(st, x, y, epsilons=[0.5])
    assert broken.is_adversarial.all() and not broken.no_gradient.any()
    # Verified on the binary CNN itself, not only on the wrapper.
    assert np.all(np.argmax(model(broken.adversarials[0]).numpy(), 1) != y)


@pytest.mark.parametrize("name", ["cnn", "tiny_abs"])
def test_spsa_runs_with_probes_in_the_input_domain(name, test_images, tiny_abs):
    model = tiny_abs if name == "tiny_abs" else registry.load_model(name)
    x, y = test_images
    x = x.copy()
    x[:, :3] = 0.0
    x[:, -3:] = 1.0  # probes at the box edges get clipped instead of rejected by the model's input check
    y = np.argmax(model(x).numpy(), 1)  # attack the model's own decisions (the tiny ABS is untrained)
    result = attacks.SPSA(steps=3, samples=16, early_stop=False)(model, x, y, epsilons=[0.02], seed=1)
    assert result.adversarials.min() >= 0 and result.adversarials.max() <= 1
    assert np.all(result.distances["linf"] <= 0.02 * (1 + 1e-5))
    np.testing.assert_array_equal(result.queries, 1 + 3 * 16 + 1)  # clean check, 3 probe rounds, verification
    assert not result.gradient_queries.any()
