"""The class-conditional VAE of ABS: Keras 3 networks, TensorFlow Probability distributions.

Architecture of the original release (``reference/abs_official/layout.txt`` §1), NHWC:

  encoder  x [B,28,28,1] -> conv 5x5/1 32 -> BN -> ELU      [B,24,24,32]
                         -> conv 4x4/2 32 -> BN -> ELU      [B,11,11,32]
                         -> conv 3x3/2 64 -> BN -> ELU      [B,5,5,64]
                         -> conv 5x5/1 16                    [B,1,1,16]  (mu = [..., :8], log-variance = [..., 8:])
  decoder  z [B,8]       -> convT 4x4/1 32 -> BN -> ELU     [B,4,4,32]
                         -> convT 5x5/2 16 -> BN -> ELU     [B,11,11,16]
                         -> convT 5x5/2 16 -> BN -> ELU     [B,25,25,16]
                         -> convT 4x4/1 1                    [B,28,28,1]  logits; sigmoid gives the image

All convolutions are VALID; BatchNorm uses eps 1e-5 (torch's). Keras layers return tensors;
the distributions (posterior q(z|x), prior p(z)) are TFP objects built outside the layers,
since ``tfp.layers`` does not work with Keras 3.

Training loss per image (the original's ``ELBOs``), pixels in [0, 1]:

  loss(x) = ( distortion + beta * rate ) / 784
  distortion = sum_pixels (x - sigmoid(decoder(z)))^2,   z ~ q(z|x)  (one reparameterised sample)
  rate       = KL( q(z|x) || N(0, I_8) )

At inference ABS fixes the posterior scale to 1, so the rate becomes ½||z||² (up to a
constant), see `abs_loss`.
"""

from __future__ import annotations

import keras
import tensorflow as tf
import tensorflow_probability as tfp

from abs_tf.constants import IMAGE_SHAPE, LATENT_DIM, NUM_PIXELS

tfd = tfp.distributions

BN_EPSILON = 1e-5  # torch's BatchNorm2d default, which the original used
BN_MOMENTUM = 0.9  # keras convention (= 1 - torch momentum 0.1)

ENCODER_SPEC = ((5, 1, 32), (4, 2, 32), (3, 2, 64), (5, 1, 2 * LATENT_DIM))  # (kernel, stride, channels)
DECODER_SPEC = ((4, 1, 32), (5, 2, 16), (5, 2, 16), (4, 1, 1))


def _conv_stack(spec, conv_cls, input_shape, name):
    inputs = keras.Input(shape=input_shape)
    h = inputs
    for i, (kernel, stride, channels) in enumerate(spec):
        h = conv_cls(channels, kernel, strides=stride, padding="valid", name=f"conv_{i}")(h)
        if i < len(spec) - 1:
            h = keras.layers.BatchNormalization(epsilon=BN_EPSILON, momentum=BN_MOMENTUM, name=f"bn_{i}")(h)
            h = keras.layers.ELU(name=f"elu_{i}")(h)
    return keras.Model(inputs, h, name=name)


def build_encoder():
    """Encoder network: [B,28,28,1] -> [B,1,1,16] (posterior mean and log-variance)."""
    return _conv_stack(ENCODER_SPEC, keras.layers.Conv2D, IMAGE_SHAPE, "encoder")


def build_decoder():
    """Decoder network: [B,1,1,8] -> [B,28,28,1] logits (the sigmoid is applied by the caller)."""
    return _conv_stack(DECODER_SPEC, keras.layers.Conv2DTranspose, (1, 1, LATENT_DIM), "decoder")


def prior(dtype=tf.float32):
    """p(z) = N(0, I_8) as a TFP distribution with event shape [8]."""
    return tfd.MultivariateNormalDiag(loc=tf.zeros([LATENT_DIM], dtype), scale_diag=tf.ones([LATENT_DIM], dtype))


def abs_loss(images, reconstructions, latents, beta=1.0):
    """The ABS per-class loss with the posterior scale fixed to 1 (layout.txt §2).

    ( ||x - G(z)||² + beta * ½||z||² ) / 784.

    Args:
      images: [..., 28, 28, 1] in [0, 1].
      reconstructions: G(z), broadcastable to images.
      latents: [..., 8], matching the leading dimensions.
    Returns:
      [...] float32 loss per image (per-pixel units).
    """
    distortion = tf.reduce_sum(tf.square(images - reconstructions), axis=[-3, -2, -1])
    rate = 0.5 * tf.reduce_sum(tf.square(latents), axis=-1)
    return (distortion + beta * rate) / NUM_PIXELS


class ClassVAE(keras.Model):
    """One class's VAE. Only the decoder is used at inference; the encoder serves training.

    Call convention: ``vae(images)`` returns the reconstruction from the posterior mean,
    float32 [B,28,28,1] in [0, 1].
    """

    def __init__(self, beta: float = 1.0, **kwargs):
        super().__init__(**kwargs)
        self.beta = float(beta)
        if not self.beta >= 0:
            raise ValueError(f"beta (the KL weight) must be >= 0, got {beta}")
        self.encoder = build_encoder()
        self.decoder = build_decoder()

    def posterior(self, images, training=False):
        """q(z|x): a diagonal Gaussian with event shape [8], batch shape [B]."""
        h = tf.reshape(self.encoder(images, training=training), [-1, 2 * LATENT_DIM])
        loc, log_var = h[:, :LATENT_DIM], h[:, LATENT_DIM:]
        return tfd.MultivariateNormalDiag(loc=loc, scale_diag=tf.exp(0.5 * log_var))

    def decode(self, latents, training=False):
        """G(z): latents [B,8] -> images [B,28,28,1] in (0, 1)."""
        return tf.sigmoid(self.decoder(tf.reshape(latents, [-1, 1, 1, LATENT_DIM]), training=training))

    def call(self, images, training=False):
        return self.decode(self.posterior(images, training=training).mean(), training=training)

    def loss_terms(self, images, seed=None, training=False):
        """Per-image training loss and its terms (see module docstring).

        Args:
          images: [B,28,28,1] in [0,1].
          seed: a stateless seed (int32 [2]) for the reparameterised sample; None draws
            from the global generator.
        Returns:
          dict of [B] float32 tensors: ``loss`` (per pixel), ``distortion`` (summed squared
          error), ``rate`` (KL in nats).
        """
        q = self.posterior(images, training=training)
        reconstructions = self.decode(q.sample(seed=seed), training=training)
        distortion = tf.reduce_sum(tf.square(images - reconstructions), axis=[1, 2, 3])
        rate = tfd.kl_divergence(q, prior())
        return {"loss": (distortion + self.beta * rate) / NUM_PIXELS, "distortion": distortion, "rate": rate}

    def mean_reconstruction_loss(self, images):
        """The ABS loss (`abs_loss`, prior weight 1) at the encoder mean, [B]; no sampling."""
        mean = self.posterior(images).mean()
        return abs_loss(images, self.decode(mean), mean)


def build_vae(beta: float = 1.0) -> ClassVAE:
    """A built (weights created) class VAE."""
    vae = ClassVAE(beta=beta)
    vae(tf.zeros([1, *IMAGE_SHAPE]))
    return vae
