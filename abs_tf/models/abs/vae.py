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

Optionally (``kl_mean_weight``) the mean part ½||mu||² of that KL gets its own weight
(the variance part keeps ``beta``), see `ClassVAE`.

At inference ABS fixes the posterior scale to 1, so the rate becomes ½||z||² (up to a
constant), see `abs_loss`.
"""

from __future__ import annotations

import keras
import tensorflow as tf
import tensorflow_probability as tfp

tfd = tfp.distributions

LATENT_DIM = 8
NUM_PIXELS = 784
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
    return _conv_stack(ENCODER_SPEC, keras.layers.Conv2D, (28, 28, 1), "encoder")


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


OBJECTIVES = ("elbo", "map")
# Training likelihood of the pixels. "gaussian" is the original's (the distortion is the summed
# squared error, the same loss ABS scores at test time); "bernoulli" trains on the summed binary
# cross-entropy instead (the usual MNIST VAE likelihood), whose gradient does not vanish at
# saturated pixels. The test-time ABS loss is the squared error whichever was trained.
LIKELIHOODS = ("gaussian", "bernoulli")


class ClassVAE(keras.Model):
    """One class's VAE. Only the decoder is used at inference; the encoder serves training.

    Call convention: ``vae(images)`` returns the reconstruction from the posterior mean,
    float32 [B,28,28,1] in [0, 1].
    """

    def __init__(self, beta: float = 1.0, kl_mean_weight: float | None = None, **kwargs):
        super().__init__(**kwargs)
        self.beta = float(beta)
        # Weight of the ½||mu||² part of the KL (the rest, ½ sum(sigma² - 1 - log sigma²), keeps
        # ``beta``). None: ``beta``, the plain beta-VAE. ABS scores ½||z||² with weight 1 at test
        # time, so a larger weight here pulls the class's codes towards the origin.
        self.kl_mean_weight = self.beta if kl_mean_weight is None else float(kl_mean_weight)
        if self.beta < 0 or self.kl_mean_weight < 0:
            raise ValueError(f"beta and kl_mean_weight must be >= 0, got {self.beta} and {self.kl_mean_weight}")
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

    def loss_terms(self, images, seed=None, training=False, objective: str = "elbo",
                   likelihood: str = "gaussian"):
        """Per-image training loss and its terms (see module docstring).

        Args:
          images: [B,28,28,1] in [0,1].
          seed: a stateless seed (int32 [2]) for the reparameterised sample; None draws
            from the global generator.
          objective: "elbo": one reparameterised posterior sample and the KL (the VAE loss);
            "map": the ABS inference loss itself at the posterior mean, z = mu and
            rate = ½||mu||² (no sampling), i.e. what ABS's latent search scores at test time.
          likelihood: "gaussian" (summed squared error, the original's) or "bernoulli"
            (summed binary cross-entropy of the pixels against the decoder's logits, nats).
        Returns:
          dict of [B] float32 tensors: ``loss`` (per pixel), ``distortion`` (summed squared
          error or cross-entropy), ``rate`` (KL in nats, or ½||mu||² for "map").
        """
        if objective not in OBJECTIVES:
            raise ValueError(f"objective must be one of {OBJECTIVES}, got {objective!r}")
        if likelihood not in LIKELIHOODS:
            raise ValueError(f"likelihood must be one of {LIKELIHOODS}, got {likelihood!r}")
        q = self.posterior(images, training=training)
        z = q.sample(seed=seed) if objective == "elbo" else q.mean()
        logits = self.decoder(tf.reshape(z, [-1, 1, 1, LATENT_DIM]), training=training)
        if likelihood == "gaussian":
            distortion = tf.reduce_sum(tf.square(images - tf.sigmoid(logits)), axis=[1, 2, 3])
        else:
            distortion = tf.reduce_sum(tf.nn.sigmoid_cross_entropy_with_logits(labels=images, logits=logits),
                                       axis=[1, 2, 3])
        if objective == "elbo":
            rate = tfd.kl_divergence(q, prior())
            # KL(N(mu, sigma²) || N(0, I)) = ½||mu||² + ½ sum(sigma² - 1 - log sigma²): reweight its mean part.
            mean_part = 0.5 * tf.reduce_sum(tf.square(q.mean()), -1)
            penalty = self.beta * rate + (self.kl_mean_weight - self.beta) * mean_part
        else:
            rate = 0.5 * tf.reduce_sum(tf.square(z), -1)
            penalty = self.beta * rate
        loss = (distortion + penalty) / NUM_PIXELS
        return {"loss": loss, "distortion": distortion, "rate": rate}

    def mean_reconstruction_loss(self, images):
        """Deterministic per-image loss (encoder mean -> decoder), [B]; no sampling."""
        return self.loss_terms(images, objective="map")["loss"]


def build_vae(beta: float = 1.0, kl_mean_weight: float | None = None) -> ClassVAE:
    """A built (weights created) class VAE."""
    vae = ClassVAE(beta=beta, kl_mean_weight=kl_mean_weight)
    vae(tf.zeros([1, 28, 28, 1]))
    return vae
