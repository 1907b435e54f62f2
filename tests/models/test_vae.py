"""The class VAE (abs_tf/vae.py) and the torch -> Keras weight mapping (abs_tf/torch_weights.py)."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from abs_tf.models import torch_weights
from abs_tf.models.abs import vae as vae_lib


@pytest.fixture(scope="module")
def vae():
    import keras

    keras.utils.set_random_seed(3)
    return vae_lib.build_vae(beta=1.0)


@pytest.fixture(scope="module")
def official(reference_dir):
    """torch state dict of the official VAEs and the fixed latent samples."""
    state = torch_weights.load_npz(reference_dir / "abs_vae_weights.npz")
    samples = np.load(reference_dir / "latent_samples.npy")
    return state, samples


def _images(n=4, seed=0):
    return np.random.default_rng(seed).uniform(size=(n, 28, 28, 1)).astype(np.float32)


# --------------------------------------------------------------------------- shapes

def test_output_shapes_and_range(vae):
    x = _images(3)
    h = vae.encoder(x)
    assert tuple(h.shape) == (3, 1, 1, 16)
    logits = vae.decoder(tf.zeros([3, 1, 1, 8]))
    assert tuple(logits.shape) == (3, 28, 28, 1)
    z = np.random.default_rng(1).normal(size=(5, 8)).astype(np.float32) * 3
    rec = vae.decode(z).numpy()
    assert rec.shape == (5, 28, 28, 1) and rec.dtype == np.float32
    assert np.all(rec > 0) and np.all(rec < 1)
    assert tuple(vae(x).shape) == (3, 28, 28, 1)
    q = vae.posterior(x)
    assert tuple(q.batch_shape) == (3,) and tuple(q.event_shape) == (8,)


def test_layer_output_sizes(vae):
    enc = [vae.encoder.get_layer(f"conv_{i}").output.shape for i in range(4)]
    dec = [vae.decoder.get_layer(f"conv_{i}").output.shape for i in range(4)]
    assert [tuple(s[1:]) for s in enc] == [(24, 24, 32), (11, 11, 32), (5, 5, 64), (1, 1, 16)]
    assert [tuple(s[1:]) for s in dec] == [(4, 4, 32), (11, 11, 16), (25, 25, 16), (28, 28, 1)]
    for model in (vae.encoder, vae.decoder):
        for i in range(3):
            assert model.get_layer(f"bn_{i}").epsilon == pytest.approx(1e-5)
        names = [layer.name for layer in model.layers]
        assert "bn_3" not in names and "elu_3" not in names  # last conv: no BN, no activation


def test_decode_accepts_b8_and_b118(vae):
    z = np.random.default_rng(2).normal(size=(3, 8)).astype(np.float32)
    np.testing.assert_array_equal(vae.decode(z).numpy(), vae.decode(z.reshape(3, 1, 1, 8)).numpy())


# --------------------------------------------------------------------------- losses

def test_abs_loss_by_hand():
    x = np.full((2, 28, 28, 1), 0.3, np.float32)
    r = np.full((2, 28, 28, 1), 0.7, np.float32)
    z = np.array([[1, 2, 3, 4, 0, 0, 0, 0], [0.5] * 8], np.float32)
    for beta in (1.0, 2.5):
        got = vae_lib.abs_loss(x, r, z, beta=beta).numpy()
        want = (784 * 0.4 ** 2 + beta * 0.5 * np.array([30.0, 2.0])) / 784
        np.testing.assert_allclose(got, want, rtol=1e-6)


def test_abs_loss_random_and_broadcast():
    rng = np.random.default_rng(0)
    x = rng.uniform(size=(3, 28, 28, 1)).astype(np.float32)
    r = rng.uniform(size=(3, 5, 28, 28, 1)).astype(np.float32)  # 5 candidates per image
    z = rng.normal(size=(3, 5, 8)).astype(np.float32)
    got = vae_lib.abs_loss(x[:, None], r, z).numpy()
    want = (((x[:, None].astype(np.float64) - r) ** 2).sum(axis=(2, 3, 4)) + 0.5 * (z.astype(np.float64) ** 2).sum(-1)) / 784
    assert got.shape == (3, 5)
    np.testing.assert_allclose(got, want, rtol=1e-5)


def test_loss_terms_closed_form():
    import keras

    keras.utils.set_random_seed(5)
    beta = 2.5
    model = vae_lib.build_vae(beta=beta)
    # make the posterior non-trivial: scale the last encoder conv so that loc/log-var are O(1)
    conv = model.encoder.get_layer("conv_3")
    kernel, bias = conv.get_weights()
    conv.set_weights([kernel * 3.0, bias + np.linspace(-1, 1, 16).astype(np.float32)])
    x = _images(6, seed=4)
    seed = tf.constant([7, 11], tf.int32)
    terms = {k: v.numpy() for k, v in model.loss_terms(x, seed=seed).items()}

    h = model.encoder(x).numpy().reshape(6, 16).astype(np.float64)
    loc, log_var = h[:, :8], h[:, 8:]
    assert np.abs(log_var).max() > 0.1  # the test would be weak with unit variances
    kl = 0.5 * np.sum(np.exp(log_var) + loc ** 2 - 1.0 - log_var, axis=1)
    np.testing.assert_allclose(terms["rate"], kl, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(terms["loss"], (terms["distortion"] + beta * terms["rate"]) / 784, rtol=1e-6)

    # distortion uses one reparameterised sample z = loc + exp(log_var/2) * eps from that seed
    z = model.posterior(x).sample(seed=seed).numpy()
    eps = (z - loc) / np.exp(0.5 * log_var)
    assert np.all(np.abs(eps) < 6) and eps.std() > 0.3  # a genuine N(0,1) draw, not the mean
    rec = model.decode(z).numpy().astype(np.float64)
    np.testing.assert_allclose(terms["distortion"], ((x - rec) ** 2).sum(axis=(1, 2, 3)), rtol=1e-5)
    # ... and not the reconstruction of the mean
    rec_mean = model.decode(loc.astype(np.float32)).numpy()
    assert not np.allclose(terms["distortion"], ((x - rec_mean) ** 2).sum(axis=(1, 2, 3)), rtol=1e-3)


def test_loss_terms_seeded_sample_is_deterministic(vae):
    x = _images(4, seed=9)
    a = vae.loss_terms(x, seed=tf.constant([1, 2]))
    b = vae.loss_terms(x, seed=tf.constant([1, 2]))
    c = vae.loss_terms(x, seed=tf.constant([1, 3]))
    np.testing.assert_array_equal(a["loss"].numpy(), b["loss"].numpy())
    np.testing.assert_array_equal(a["distortion"].numpy(), b["distortion"].numpy())
    assert not np.array_equal(a["distortion"].numpy(), c["distortion"].numpy())
    np.testing.assert_array_equal(a["rate"].numpy(), c["rate"].numpy())  # the KL does not depend on the sample


def test_negative_kl_weight_is_refused():
    with pytest.raises(ValueError, match="beta"):
        vae_lib.ClassVAE(beta=-0.5)


def test_mean_reconstruction_loss(vae):
    x = _images(3, seed=10)
    mean = vae.posterior(x).mean().numpy()
    h = vae.encoder(x).numpy().reshape(3, 16)
    np.testing.assert_array_equal(mean, h[:, :8])
    rec = vae.decode(mean).numpy().astype(np.float64)
    want = (((x - rec) ** 2).sum(axis=(1, 2, 3)) + 0.5 * (mean.astype(np.float64) ** 2).sum(1)) / 784
    np.testing.assert_allclose(vae.mean_reconstruction_loss(x).numpy(), want, rtol=1e-5)
    np.testing.assert_allclose(vae(x).numpy(), rec, rtol=1e-6)


# --------------------------------------------------------------------------- official weights

def _np_conv_transpose(h, w, b, stride):
    """layout.txt §1: y[b,o,i*s+p,j*s+q] += h[b,ci,i,j] * W[ci,o,p,q]; NCHW, torch layout W[in,out,kh,kw]."""
    n, cin, hi, wi = h.shape
    _, cout, kh, kw = w.shape
    y = np.zeros((n, cout, (hi - 1) * stride + kh, (wi - 1) * stride + kw))
    for i in range(hi):
        for j in range(wi):
            y[:, :, i * stride:i * stride + kh, j * stride:j * stride + kw] += np.einsum(
                "nc,copq->nopq", h[:, :, i, j], w)
    return y + b[None, :, None, None]


def _np_conv(x, w, b, stride):
    """torch Conv2d (cross-correlation, VALID), NCHW, W[out,in,kh,kw]."""
    n, cin, hi, wi = x.shape
    cout, _, kh, kw = w.shape
    ho, wo = (hi - kh) // stride + 1, (wi - kw) // stride + 1
    y = np.zeros((n, cout, ho, wo))
    for p in range(kh):
        for q in range(kw):
            patch = x[:, :, p:p + stride * (ho - 1) + 1:stride, q:q + stride * (wo - 1) + 1:stride]
            y += np.einsum("nchw,oc->nohw", patch, w[:, :, p, q])
    return y + b[None, :, None, None]


def _np_bn_elu(h, state, prefix):
    g, beta = state[prefix + ".weight"], state[prefix + ".bias"]
    mean, var = state[prefix + ".running_mean"], state[prefix + ".running_var"]
    h = (h - mean[None, :, None, None]) / np.sqrt(var[None, :, None, None] + 1e-5) * g[None, :, None, None] \
        + beta[None, :, None, None]
    return np.where(h > 0, h, np.expm1(np.minimum(h, 0)))


def _np_decoder(state, prefix, z):
    h = z.astype(np.float64)[:, :, None, None]
    for i, stride in enumerate((1, 2, 2, 1)):
        h = _np_conv_transpose(h, state[f"{prefix}conv_{i}.weight"].astype(np.float64),
                               state[f"{prefix}conv_{i}.bias"].astype(np.float64), stride)
        if i < 3:
            h = _np_bn_elu(h, {k: v.astype(np.float64) for k, v in state.items() if k.startswith(prefix)},
                           f"{prefix}bn_{i}")
    return 1.0 / (1.0 + np.exp(-h))  # [B,1,28,28]


@pytest.mark.parametrize("class_id", [0, 7])
def test_official_decoder_matches_numpy(official, class_id):
    state, samples = official
    model = vae_lib.build_vae()
    torch_weights.assign_torch_stack(model.decoder, state, f"vae{class_id}/Decoder.", 4)
    z = samples[[0, 1234]]
    got = model.decode(z).numpy()  # [2,28,28,1]
    want = _np_decoder(state, f"vae{class_id}/Decoder.", z).transpose(0, 2, 3, 1)
    assert want.std() > 0.05  # a real digit-like image, not a constant
    np.testing.assert_allclose(got, want, atol=1e-5)
    # an untransposed / wrongly transposed kernel would not match
    bad = vae_lib.build_vae()
    flipped = dict(state)
    w = state[f"vae{class_id}/Decoder.conv_1.weight"]
    flipped[f"vae{class_id}/Decoder.conv_1.weight"] = np.ascontiguousarray(w[:, :, ::-1, ::-1])
    torch_weights.assign_torch_stack(bad.decoder, flipped, f"vae{class_id}/Decoder.", 4)
    assert np.abs(bad.decode(z).numpy() - want).max() > 1e-3


def test_official_encoder_conv_mapping(official, mnist_test_small):
    """Conv2d kernels [out,in,kh,kw] -> Keras, checked conv by conv on shared inputs.

    (Chaining the whole encoder against float64 is ill-conditioned: each official encoder has a
    near-constant bn_0 channel with running_var ~1e-11, i.e. a gain of ~2e4 on float32 rounding.
    The BN/ELU mapping itself is checked numerically by the decoder test.)
    """
    state, _ = official
    images, _ = mnist_test_small
    prefix = "vae3/Encoder."
    model = vae_lib.build_vae()
    torch_weights.assign_torch_stack(model.encoder, state, prefix, 4)
    h = tf.constant(images[:2])
    for i, stride in enumerate((1, 2, 2, 1)):
        conv = model.encoder.get_layer(f"conv_{i}")
        got = conv(h).numpy()
        want = _np_conv(h.numpy().astype(np.float64).transpose(0, 3, 1, 2),
                        state[f"{prefix}conv_{i}.weight"].astype(np.float64),
                        state[f"{prefix}conv_{i}.bias"].astype(np.float64), stride).transpose(0, 2, 3, 1)
        np.testing.assert_allclose(got, want, atol=1e-5 * max(1.0, np.abs(want).max()), err_msg=f"conv_{i}")
        h = conv(h)
        if i < 3:
            bn = model.encoder.get_layer(f"bn_{i}")
            gamma, beta, mean, var = bn.get_weights()
            for arr, key in ((gamma, "weight"), (beta, "bias"), (mean, "running_mean"), (var, "running_var")):
                np.testing.assert_array_equal(arr, state[f"{prefix}bn_{i}.{key}"])
            h = model.encoder.get_layer(f"elu_{i}")(bn(h, training=False))
    assert tuple(h.shape) == (2, 1, 1, 16)


def test_assign_torch_stack_errors(official):
    state, _ = official
    model = vae_lib.build_vae()
    missing = {k: v for k, v in state.items() if k != "vae0/Decoder.bn_2.running_var"}
    with pytest.raises(KeyError, match=r"vae0/Decoder\.bn_2\.running_var"):
        torch_weights.assign_torch_stack(model.decoder, missing, "vae0/Decoder.", 4)
    with pytest.raises(ValueError, match=r"vae0/Encoder\.conv_0: torch arrays have shapes"):
        torch_weights.assign_torch_stack(model.decoder, state, "vae0/Encoder.", 4)  # encoder arrays, decoder layers
