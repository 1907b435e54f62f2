"""ABS / Binary ABS inference: equivalence with the original release, options, checks, gradients."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from abs_tf.models.abs.model import ABS, BINARY_SCALINGS, confidence_softmax, latent_samples
from abs_tf.models.abs.certify import l2_lower_bounds
from abs_tf.models.abs.vae import build_decoder

N_FAST = 4  # reference images in the fast equivalence test (all 8000 samples, 50 steps)


@pytest.fixture(scope="module")
def official(reference_dir):
    return ABS.from_official(reference_dir / "abs_vae_weights.npz", reference_dir / "latent_samples.npy")


@pytest.fixture(scope="module")
def reference_100(reference_dir):
    with np.load(reference_dir / "abs_logits_test0000-0099.npz") as f:
        return {k: f[k] for k in f.files}


@pytest.fixture(scope="module")
def small_abs():
    """Random decoders, 200 samples: cheap, for options and checks (not accuracy)."""
    tf.keras.utils.set_random_seed(3)
    return ABS([build_decoder() for _ in range(10)], latent_samples(200), n_steps=4)


def _images(ref, n):
    return (ref["images"][:n].astype(np.float32) / 255.0)[..., None]


def test_latent_samples_equal_release(reference_dir):
    np.testing.assert_array_equal(latent_samples(8000, seed=1234), np.load(reference_dir / "latent_samples.npy"))


@pytest.mark.parametrize("binary", [False, True], ids=["abs", "binary_abs"])
def test_equivalence_with_official_release(official, reference_100, binary):
    pre = "binary_abs" if binary else "abs"
    model = official.variant(binary=True) if binary else official
    x = _images(reference_100, N_FAST)
    out = model.search(x)
    np.testing.assert_array_equal(out["init_index"].numpy(), reference_100[f"{pre}_init_sample_index"][:N_FAST])
    logits = model(x).numpy()
    ref_logits = reference_100[f"{pre}_logits"][:N_FAST]
    assert np.abs(logits - ref_logits).max() <= 1e-5
    np.testing.assert_allclose(out["latents"].numpy(), reference_100[f"{pre}_final_latents"][:N_FAST], atol=1e-3)
    np.testing.assert_allclose(model.predict_proba(x).numpy(), reference_100[f"{pre}_probs"][:N_FAST], atol=1e-5)
    np.testing.assert_array_equal(logits.argmax(1), ref_logits.argmax(1))


@pytest.mark.slow
@pytest.mark.parametrize("binary", [False, True], ids=["abs", "binary_abs"])
def test_equivalence_with_official_release_1000(official, reference_dir, binary):
    pre = "binary_abs" if binary else "abs"
    with np.load(reference_dir / "abs_logits_test0000-0999.npz") as f:
        ref = {k: f[k] for k in f.files}
    model = official.variant(binary=True, max_batch=100) if binary else official.variant(max_batch=100)
    x = _images(ref, len(ref["images"]))
    out = model.search(x)
    index_equal = out["init_index"].numpy() == ref[f"{pre}_init_sample_index"]
    assert index_equal.mean() == 1.0
    logits = (-out["losses"] * model.scalings).numpy()
    assert np.abs(logits - ref[f"{pre}_logits"]).max() <= 1e-5


def test_projection_original_drops_sign_norm_keeps_it(small_abs):
    z = tf.constant([[[-6.0, 8.0, 0, 0, 0, 0, 0, 0], [1.0, -2.0, 0, 0, 0, 0, 0, 0]]])   # norms 10 and sqrt(5)
    original = small_abs.variant(projection="original")._project(z).numpy()
    norm = small_abs.variant(projection="norm")._project(z).numpy()
    np.testing.assert_allclose(original[0, 0, :2], [3.0, 4.0], atol=1e-6)     # |z_i| * 5/||z||: sign lost
    np.testing.assert_allclose(norm[0, 0, :2], [-3.0, 4.0], atol=1e-6)
    np.testing.assert_allclose(original[0, 1], z[0, 1], atol=0)              # inside the ball: untouched
    np.testing.assert_allclose(norm[0, 1], z[0, 1], atol=0)


def test_xla_and_graph_give_the_same_logits(small_abs, mnist_test_small):
    x = mnist_test_small[0][:3]
    graph = small_abs(x).numpy()
    xla = small_abs.variant(jit_compile=True)(x).numpy()
    np.testing.assert_allclose(xla, graph, atol=1e-5)


def test_chunked_call_equals_single_call(small_abs, mnist_test_small):
    x = mnist_test_small[0][:5]
    np.testing.assert_allclose(small_abs.variant(max_batch=2)(x).numpy(), small_abs(x).numpy(), atol=1e-6)


def test_binary_scalings_and_binarization(small_abs, mnist_test_small):
    x = mnist_test_small[0][:2]
    binary = small_abs.variant(binary=True)
    losses = binary.search(x)["losses"].numpy()
    np.testing.assert_allclose(binary(x).numpy(), -losses * np.array(BINARY_SCALINGS, np.float32), rtol=1e-6)
    # Inputs that binarize alike are classified alike.
    same_side = np.where(x >= 0.5, (x + 1.0) / 2.0, x / 2.0)
    np.testing.assert_allclose(binary(same_side).numpy(), binary(x).numpy(), atol=0)


def test_binary_scalings_scale_binary_losses_only_and_survive_variant(small_abs, mnist_test_small):
    x = mnist_test_small[0][:2]
    scalings = np.linspace(0.9, 1.1, 10).astype(np.float32)
    plain = small_abs.variant(binary_scalings=scalings)
    np.testing.assert_allclose(plain.scalings.numpy(), np.ones(10))              # ABS never scales
    binary = plain.variant(binary=True)                                          # inherits them
    np.testing.assert_allclose(binary(x).numpy(), -binary.search(x)["losses"].numpy() * scalings, rtol=1e-6)
    np.testing.assert_allclose(binary.variant(binary=False).scalings.numpy(), np.ones(10))
    np.testing.assert_allclose(small_abs.variant(binary=True).scalings.numpy(), BINARY_SCALINGS, rtol=1e-6)


@pytest.mark.parametrize("bad", [np.ones(9), np.r_[np.ones(9), 0.0], np.r_[np.ones(9), np.nan], "1.0"])
def test_bad_scalings_raise(small_abs, bad):
    with pytest.raises(ValueError, match="binary_scalings"):
        small_abs.variant(binary_scalings=bad)


def test_from_weights_reads_calibrated_binary_scalings(tmp_path, repo_root):
    from abs_tf.models.abs import calibration

    for c in range(10):
        (tmp_path / f"vae_{c}.weights.h5").symlink_to(repo_root / "weights" / "abs_vae" / f"vae_{c}.weights.h5")
    scalings = np.r_[1.0, np.full(9, 1.02)]
    calibration.save_scalings(tmp_path / calibration.SCALINGS_FILE, scalings, note="test")
    binary = ABS.from_weights(tmp_path, binary=True, n_samples=50, n_steps=1)
    np.testing.assert_allclose(binary.scalings.numpy(), scalings, rtol=1e-6)
    plain = ABS.from_weights(tmp_path, binary=False, n_samples=50, n_steps=1)
    assert np.allclose(plain.scalings.numpy(), 1.0)
    np.testing.assert_allclose(plain.variant(binary=True).scalings.numpy(), scalings, rtol=1e-6)
    override = ABS.from_weights(tmp_path, binary=True, binary_scalings=BINARY_SCALINGS, n_samples=50, n_steps=1)
    np.testing.assert_allclose(override.scalings.numpy(), BINARY_SCALINGS, rtol=1e-6)
    (tmp_path / calibration.SCALINGS_FILE).write_text("{not json")
    with pytest.raises(ValueError, match="binary_scalings.json"):
        ABS.from_weights(tmp_path, binary=True, n_samples=50, n_steps=1)


@pytest.mark.parametrize("bad, error", [
    (np.zeros((2, 28, 28), np.float32), ValueError),
    (np.zeros((2, 28, 28, 3), np.float32), ValueError),
    (np.zeros((2, 28, 28, 1), np.uint8), TypeError),
    (np.full((2, 28, 28, 1), np.nan, np.float32), tf.errors.InvalidArgumentError),
    (np.full((2, 28, 28, 1), 1.5, np.float32), tf.errors.InvalidArgumentError),
    (np.full((2, 28, 28, 1), -0.1, np.float32), tf.errors.InvalidArgumentError),
], ids=["rank3", "rgb", "uint8", "nan", "above1", "below0"])
def test_bad_input_raises(small_abs, bad, error):
    with pytest.raises(error):
        small_abs(bad)


def test_bad_values_raise_inside_tf_function(small_abs):
    fn = tf.function(lambda x: small_abs(x), input_signature=[tf.TensorSpec([None, 28, 28, 1], tf.float32)])
    with pytest.raises(tf.errors.InvalidArgumentError, match="NaN or Inf"):
        fn(np.full((1, 28, 28, 1), np.inf, np.float32))
    with pytest.raises(tf.errors.InvalidArgumentError, match="> 1"):
        fn(np.full((1, 28, 28, 1), 2.0, np.float32))


def test_empty_batch(small_abs):
    assert small_abs(np.zeros((0, 28, 28, 1), np.float32)).shape == (0, 10)


def test_confidence_softmax_matches_formula_and_is_stable():
    logits = np.array([[-0.01, -0.02, -0.03, -0.05, -0.2, -0.2, -0.2, -0.2, -0.2, -0.2]], np.float64)
    e = np.exp(440 * logits)
    expected = (e + 0.000039) / (e.sum() + 10 * 0.000039)
    np.testing.assert_allclose(confidence_softmax(logits.astype(np.float32)).numpy(), expected, rtol=1e-5)
    # Garbage (every class explains it badly) gives ~uniform low confidence, not NaN.
    far = confidence_softmax(np.full((1, 10), -3.0, np.float32)).numpy()
    np.testing.assert_allclose(far, 0.1, atol=1e-6)


def test_envelope_gradient_matches_finite_differences(official, reference_100):
    """d(-loss_c)/dx at the found latent vs central differences of the whole search."""
    model = official.variant(n_steps=100, learning_rate=0.02)
    x = tf.constant(_images(reference_100, 1))
    label = int(reference_100["labels"][0])
    with tf.GradientTape() as tape:
        tape.watch(x)
        logit = model(x)[0, label]
    grad = tape.gradient(logit, x).numpy()
    rng = np.random.default_rng(0)
    ratios = []
    for _ in range(3):
        direction = rng.normal(size=x.shape).astype(np.float32)
        direction *= (x.numpy() > 0.05) * (x.numpy() < 0.95)        # stay inside [0, 1]
        direction /= np.linalg.norm(direction)
        h = 0.05
        plus = model(np.clip(x + h * direction, 0, 1)).numpy()[0, label]
        minus = model(np.clip(x - h * direction, 0, 1)).numpy()[0, label]
        numeric = (plus - minus) / (2 * h)
        ratios.append(float(np.sum(grad * direction)) / numeric)
    assert all(0.8 < r < 1.25 for r in ratios), ratios


def test_gradient_none_is_zero(small_abs, mnist_test_small):
    x = tf.constant(mnist_test_small[0][:1])
    with tf.GradientTape() as tape:
        tape.watch(x)
        out = small_abs.variant(gradient="none")(x)
    assert not np.any(tape.gradient(out, x).numpy())


def test_certified_bound_hand_case():
    x = np.zeros((1, 28, 28, 1))
    rec = np.zeros((1, 28, 28, 10))
    lat = np.zeros((1, 10, 8))
    rec[0, :, :, 2:] = 1.0                       # classes 2..9: r = 28, far away
    rec[0, :2, :2, 1] = 1.0                      # class 1: r = 2, k = 0 -> eps = 4 / (2 * 2) = 1
    # true class 0 explains x exactly (r = 0, k = 0)
    np.testing.assert_allclose(l2_lower_bounds(x, rec, lat, [0]), [1.0])
    # a class whose reconstruction is close but needs a far latent: r = 1, k = 50
    rec[0, :, :, 1] = 0.0
    rec[0, 0, 0, 1] = 1.0
    lat[0, 1, 0] = 10.0
    np.testing.assert_allclose(l2_lower_bounds(x, rec, lat, [0]), [np.sqrt(50.0)])
    # misclassified: another class explains x better than the label -> 0
    assert l2_lower_bounds(x, rec, lat, [3])[0] == 0.0


def test_flops_per_image_matches_a_count_from_the_keras_decoder(small_abs, official):
    """The count against the Keras decoder's layer shapes and the cached sample matrix (not the
    constants of decoder_stack): each transposed conv does (input pixels x kernel size) multiply-
    adds; an Adam update runs the decoder and its input-gradient pass (as many multiply-adds),
    the final evaluation one more forward pass; the selection is one product with [784, 10 S]."""
    import keras

    macs = 0
    for layer in build_decoder().layers:
        if isinstance(layer, keras.layers.Conv2DTranspose):
            _, height, width, _ = layer.input.shape
            macs += height * width * int(np.prod(layer.kernel.shape))
    for model in (small_abs, official):
        pixels, columns = model.reconstructions_t.shape
        assert columns == 10 * model.n_samples
        selection = 2 * pixels * columns
        search = 10 * (2 * (model.n_steps - 1) + 1) * 2 * macs
        assert model.flops_per_image() == {"initial_selection": selection, "latent_search": search,
                                           "total": selection + search}
    assert 2.0e9 < official.flops_per_image()["total"] < 2.6e9   # ~2.4 GFLOP: 8000 samples, 50 steps


def test_official_abs_checks_the_shape_in_the_graph(official):
    fn = tf.function(lambda images: official(images), input_signature=[tf.TensorSpec(None, tf.float32)])
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"images must have shape \[B, 28, 28, 1\], "
                                                             r"got \[2, 28, 28, 4\]"):
        fn(tf.zeros((2, 28, 28, 4)))
    assert tuple(fn(tf.zeros((0, 28, 28, 1))).shape) == (0, 10)


def test_class_losses_are_the_vae_abs_loss(small_abs, mnist_test_small):
    """One formula: the search's final losses equal vae.abs_loss of its reconstructions."""
    from abs_tf.models.abs.vae import abs_loss

    x = mnist_test_small[0][:2]
    out = small_abs.search(x)
    rec = np.moveaxis(out["reconstructions"].numpy(), -1, 1)[..., None]         # [B,10,28,28,1]
    expected = abs_loss(x[:, None], rec, out["latents"], small_abs.beta).numpy()
    np.testing.assert_allclose(out["losses"].numpy(), expected, rtol=1e-6)
