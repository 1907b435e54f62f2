"""ABS and Binary ABS: classification by a latent search in ten class VAEs.

For an image x and class c the class loss is the smallest ABS loss found by the search

  loss_c(x, z) = ( ||x - G_c(z)||² + beta * ½||z||² ) / 784          (per-pixel units)

1. the best of ``n_samples`` fixed prior samples (decoded once per class and cached; chosen by
   one matrix product ``||x||² - 2 x·G + ||G||²``),
2. ``n_steps - 1`` Adam updates (lr 0.05, betas 0.9/0.999, eps 1e-8, torch's update rule) on
   the latents of all images x classes at once, each followed by a projection onto the ball
   of radius 5, then a final evaluation.

logits = -loss (Binary ABS: inputs binarized at 0.5 and logits = -loss * scaling_c).
Probabilities: ``(exp(440 l_c) + eta) / (sum exp(440 l) + 10 eta)``, eta = 3.9e-5, computed
in log space (`abs_tf.models.abs.confidence`). Everything of the search is one `tf.function`
(optionally XLA-compiled). The fixed samples are drawn by `abs_tf.models.abs.samples`.

Gradients: ``model(x)`` carries the *envelope* gradient by default: the class loss is a
minimum over z, so at the found latent z* its input gradient is ``2 (x - G_c(z*)) / 784``
(no differentiation through the Adam steps). For Binary ABS that gradient is taken with
respect to the binarized input and passed straight through the binarization (BPDA); the true
gradient of Binary ABS is zero almost everywhere. Binary ABS also declares its front end
(`abs_tf.models.preprocessing`): ``model.preprocessing`` is ``BINARIZE`` and
``model.logits_after_preprocessing(x)`` gives the logits of already binarized images with the
envelope gradient w.r.t. them. ``gradient="none"`` gives zero gradients.
"""

from __future__ import annotations

import inspect
from pathlib import Path

import numpy as np
import tensorflow as tf

from abs_tf.checks import check_images
from abs_tf.constants import IMAGE_SHAPE, LATENT_DIM, NUM_CLASSES, NUM_PIXELS
from abs_tf.models.abs import calibration
from abs_tf.models.abs.confidence import confidence_softmax
from abs_tf.models.abs.decoder_stack import DECODER_FLOPS, StackedDecoder
from abs_tf.models.abs.samples import latent_samples
from abs_tf.models.abs.vae import abs_loss
from abs_tf.models.preprocessing import BINARIZE, straight_through

BINARY_SCALINGS = (1.0, 0.96, 1.001, 1.06, 0.98, 0.96, 1.03, 1.0, 1.0, 1.0)
PROJECTIONS = ("original", "norm")
GRADIENTS = ("envelope", "none")


def _require(name, value, ok: bool, allowed: str):
    if not ok:
        raise ValueError(f"{name} must be {allowed}, got {value!r}")


def _is_int(value) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def validate_search_options(*, n_steps, learning_rate, radius, beta, max_batch, projection, gradient):
    """ValueError naming the first option outside its allowed range (before any work is done)."""
    _require("n_steps", n_steps, _is_int(n_steps) and n_steps >= 1,
             "an integer >= 1 (n_steps - 1 Adam updates, then the final evaluation)")
    _require("max_batch", max_batch, _is_int(max_batch) and max_batch >= 1, "an integer >= 1 (images per chunk)")
    _require("learning_rate", learning_rate, np.isfinite(learning_rate) and learning_rate > 0, "a finite number > 0")
    _require("radius", radius, np.isfinite(radius) and radius > 0, "a finite number > 0 (the latent ball's radius)")
    _require("beta", beta, np.isfinite(beta) and beta >= 0, "a finite number >= 0 (the prior's weight)")
    _require("projection", projection, projection in PROJECTIONS, f"one of {PROJECTIONS}")
    _require("gradient", gradient, gradient in GRADIENTS, f"one of {GRADIENTS}")


class ABS(tf.Module):
    """Analysis-by-synthesis classifier. ``model(images)`` -> logits.

    Args:
      decoders: ten Keras decoders (class order 0..9), e.g. ``[vae.decoder for vae in vaes]``.
      samples: float32 [S, 8] fixed latent samples.
      binary: Binary ABS (binarize at 0.5, per-class loss scalings); the model then declares
        ``preprocessing = BINARIZE`` (`abs_tf.models.preprocessing`).
      binary_scalings: Binary ABS's per-class loss scalings [10] (positive); None: the
        release's ``BINARY_SCALINGS``. ABS (binary=False) never scales its losses. Kept by
        `variant`, so a model switched to binary gets them too; ``from_weights`` passes the
        scalings calibrated for its VAEs when the directory has them (`abs_tf.models.abs.calibration`).
      n_steps: search iterations (>= 1): n_steps - 1 Adam updates, then the final evaluation.
      learning_rate, radius, beta: Adam step size (> 0), projection radius (> 0), prior weight (>= 0).
      projection: "original" (the release's sign-dropping |z_i| * r/||z||) or "norm"
        (z * min(1, r/||z||)).
      gradient: "envelope" (default) or "none"; see the module docstring.
      jit_compile: XLA-compile the search.
      xla_kernels: let the search use a small XLA-compiled kernel inside the graph (the
        decoder's last-layer overlap-add; faster). False gives a graph without XLA ops, as
        needed by SavedModels for TF Serving (its XLA:CPU JIT is off by default).
      max_batch: larger inputs are processed in chunks of this many images (>= 1; memory bound).

    Every option is checked on construction (ValueError naming it and its allowed range).
    """

    def __init__(self, decoders, samples, *, binary: bool = False, binary_scalings=None, n_steps: int = 50,
                 learning_rate: float = 0.05, radius: float = 5.0, beta: float = 1.0,
                 projection: str = "norm", gradient: str = "envelope", jit_compile: bool = False,
                 max_batch: int = 128, xla_kernels: bool = True, name: str = "abs", _shared=None):
        super().__init__(name=name)
        if _shared is not None:  # a variant of another model: reuse its decoder stack and cache
            decoders, samples = [None] * NUM_CLASSES, _shared["samples"]
        validate_search_options(n_steps=n_steps, learning_rate=learning_rate, radius=radius, beta=beta,
                                max_batch=max_batch, projection=projection, gradient=gradient)
        samples = np.asarray(samples, np.float32)
        if samples.ndim != 2 or samples.shape[1] != LATENT_DIM or len(samples) == 0:
            raise ValueError(f"latent samples must have shape [S, {LATENT_DIM}] with S >= 1, got {samples.shape}")
        if len(decoders) != NUM_CLASSES:
            raise ValueError(f"ABS needs {NUM_CLASSES} class decoders, got {len(decoders)}")
        self.binary, self.n_steps, self.learning_rate = bool(binary), int(n_steps), float(learning_rate)
        self.radius, self.beta, self.projection = float(radius), float(beta), projection
        self.gradient, self.jit_compile, self.max_batch = gradient, bool(jit_compile), int(max_batch)
        self.xla_kernels = bool(xla_kernels)
        self.n_samples = len(samples)
        self._binary_scalings = (BINARY_SCALINGS if binary_scalings is None
                                 else calibration.validated_scalings(binary_scalings, "binary_scalings"))
        self.scalings = tf.constant(self._binary_scalings if binary else (1.0,) * NUM_CLASSES, tf.float32)
        self.samples = tf.constant(samples)
        self.sample_prior = tf.constant(self.beta * 0.5 * np.sum(samples.astype(np.float64) ** 2, 1), tf.float32)
        if _shared is None:
            self.decoder = StackedDecoder(decoders)
            self._cache_reconstructions()
        else:
            self.decoder = _shared["decoder"]
            self.reconstructions_t = _shared["reconstructions_t"]
            self.reconstruction_sq_norms = _shared["reconstruction_sq_norms"]
        spec = [tf.TensorSpec([None, *IMAGE_SHAPE], tf.float32)]
        self._search_fn = tf.function(self._search, input_signature=spec, jit_compile=self.jit_compile)
        self._logits_fn = tf.function(self._logits_with_gradient, input_signature=spec)

    # ----------------------------------------------------------------------------- set-up
    def _cache_reconstructions(self, chunk: int = 1000):
        recs = []
        decode = tf.function(lambda z: tf.sigmoid(self.decoder(tf.tile(z[:, None, :], [1, NUM_CLASSES, 1]))))
        for i in range(0, self.n_samples, chunk):
            recs.append(decode(self.samples[i:i + chunk]))                  # [k,28,28,10]
        rec = tf.concat(recs, 0)
        rec = tf.reshape(tf.transpose(rec, [3, 0, 1, 2]), [NUM_CLASSES, self.n_samples, NUM_PIXELS])
        # [784, 10*S] for one matmul; squared norms [10, S] as in the original's expanded form.
        self.reconstructions_t = tf.Variable(tf.transpose(tf.reshape(rec, [NUM_CLASSES * self.n_samples, NUM_PIXELS])),
                                             trainable=False, name="cached_reconstructions")
        self.reconstruction_sq_norms = tf.Variable(tf.reduce_sum(tf.square(rec), -1), trainable=False)

    def variant(self, **overrides):
        """The same decoders and cached reconstructions with other search options, e.g.
        ``model.variant(binary=True)`` or ``variant(n_steps=10, jit_compile=True)``."""
        options = dict(binary=self.binary, binary_scalings=self._binary_scalings, n_steps=self.n_steps,
                       learning_rate=self.learning_rate, radius=self.radius, beta=self.beta,
                       projection=self.projection, gradient=self.gradient, jit_compile=self.jit_compile,
                       max_batch=self.max_batch, xla_kernels=self.xla_kernels)
        unknown = set(overrides) - set(options)
        if unknown:
            raise TypeError(f"unknown ABS options: {sorted(unknown)}")
        options.update(overrides)
        shared = dict(decoder=self.decoder, samples=self.samples.numpy(), reconstructions_t=self.reconstructions_t,
                      reconstruction_sq_norms=self.reconstruction_sq_norms)
        return ABS(None, None, _shared=shared, **options)

    @classmethod
    def from_weights(cls, weights_dir=None, *, binary: bool = False,
                     n_samples: int = 8000, seed: int = 1234, **kwargs):
        """ABS from our trained VAEs (``vae_{c}.weights.h5``) and freshly drawn samples.

        ``weights_dir`` defaults to the shipped ``<repo>/weights/abs_vae`` (whatever the working
        directory). Binary ABS scales its losses with the scalings calibrated for these VAEs,
        ``<weights_dir>/binary_scalings.json``, when that file exists (see
        `abs_tf.models.abs.calibration`), else with the release's; ``binary_scalings=`` overrides both.
        Options are checked before anything is loaded."""
        from abs_tf.paths import shipped_weights_dir
        from abs_tf.models.abs.vae_weights import load_vaes

        samples = latent_samples(n_samples, seed)        # checks n_samples and seed
        cls._check_options_early(kwargs)
        weights_dir = Path(weights_dir) if weights_dir is not None else shipped_weights_dir("abs_vae")
        vaes = load_vaes(weights_dir)
        calibrated = Path(weights_dir) / calibration.SCALINGS_FILE
        if "binary_scalings" not in kwargs and calibrated.is_file():
            kwargs["binary_scalings"] = calibration.load_scalings(calibrated)
        return cls([v.decoder for v in vaes], samples, binary=binary, **kwargs)

    @classmethod
    def _check_options_early(cls, options: dict):
        """The checks of the constructor on ``options`` (defaults for the others), run before
        weights are loaded: unknown names raise TypeError, bad values ValueError."""
        params = inspect.signature(cls.__init__).parameters
        unknown = sorted(set(options) - (set(params) - {"self", "decoders", "samples", "_shared"}))
        if unknown:
            raise TypeError(f"unknown ABS options: {unknown}")
        validate_search_options(**{name: options.get(name, params[name].default) for name in
                                   inspect.signature(validate_search_options).parameters})

    @classmethod
    def from_official(cls, weights, latent_samples, *, binary: bool = False, projection: str = "original",
                      **kwargs):
        """The original release's pretrained ABS: torch weights (.npz) and latent samples (.npy)."""
        from abs_tf.models import torch_weights
        from abs_tf.models.abs.vae import build_decoder

        cls._check_options_early(dict(kwargs, projection=projection))
        state = torch_weights.load_npz(weights)
        decoders = []
        for c in range(NUM_CLASSES):
            dec = build_decoder()
            torch_weights.assign_torch_stack(dec, state, f"vae{c}/Decoder.", 4)
            decoders.append(dec)
        path = Path(latent_samples)
        if not path.is_file():
            raise FileNotFoundError(f"latent samples file not found: {path}")
        samples = np.load(path)
        return cls(decoders, samples, binary=binary, projection=projection, **kwargs)

    @classmethod
    def from_official_dir(cls, directory, **kwargs):
        """`from_official` with the release's files in one directory (``abs_vae_weights.npz`` and
        ``latent_samples.npy``, as in `abs_tf.paths.reference_dir`)."""
        directory = Path(directory)
        return cls.from_official(directory / "abs_vae_weights.npz", directory / "latent_samples.npy", **kwargs)

    # ----------------------------------------------------------------------------- search
    def _losses(self, x, latents):
        """x [B,28,28,1], latents [B,10,8] -> (losses [B,10], reconstructions [B,28,28,10])."""
        rec = tf.sigmoid(self.decoder(latents, self.xla_kernels))
        per_class = tf.transpose(rec, [0, 3, 1, 2])[..., None]                # [B,10,28,28,1]
        return abs_loss(x[:, None], per_class, latents, self.beta), rec

    def _loss_gradient(self, x, latents):
        """d loss_c / d z_c for every image and class (hand-written backward pass), [B,10,8]."""
        logits, activations = self.decoder._forward(latents, self.xla_kernels)
        rec = tf.sigmoid(logits)
        upstream = (2.0 / NUM_PIXELS) * (rec - x) * rec * (1.0 - rec)
        return self.decoder.vjp(activations, upstream) + (self.beta / NUM_PIXELS) * latents

    def _project(self, z):
        sq = tf.reduce_sum(tf.square(z), -1, keepdims=True)
        r2 = self.radius ** 2
        if self.projection == "original":
            clipped = tf.sqrt(tf.square(z) / sq * r2)
        else:
            clipped = z * (self.radius / tf.sqrt(sq))
        return tf.where(sq > r2, clipped, z)

    def initial_latents(self, x):
        """Best cached sample per image and class: x [B,28,28,1] (already binarized if binary)
        -> (indices [B,10] int64, losses [B,10])."""
        flat = tf.reshape(x, [-1, NUM_PIXELS])
        dots = tf.reshape(tf.matmul(flat, self.reconstructions_t), [-1, NUM_CLASSES, self.n_samples])
        sq = tf.reduce_sum(tf.square(flat), -1)[:, None, None]
        scores = (sq + self.reconstruction_sq_norms[None] - 2.0 * dots) / NUM_PIXELS \
            + self.sample_prior / NUM_PIXELS
        return tf.argmin(scores, -1), tf.reduce_min(scores, -1)

    def _search(self, x):
        """x [B,28,28,1] (already binarized for Binary ABS) -> dict: losses [B,10] (unscaled),
        latents [B,10,8], reconstructions [B,28,28,10], init_index [B,10]. B may be 0."""
        # Some CPU kernels (oneDNN's Conv2DBackpropInput) reject empty batches.
        c = NUM_CLASSES
        empty = {"losses": tf.zeros([0, c]), "latents": tf.zeros([0, c, LATENT_DIM]),
                 "reconstructions": tf.zeros([0, *IMAGE_SHAPE[:2], c]), "init_index": tf.zeros([0, c], tf.int64)}
        return tf.cond(tf.shape(x)[0] > 0, lambda: self._search_nonempty(x), lambda: empty)

    def _search_nonempty(self, x):
        index, _ = self.initial_latents(x)
        z = tf.gather(self.samples, index)                                   # [B,10,8]
        m = tf.zeros_like(z)
        v = tf.zeros_like(z)
        b1, b2, eps, lr = 0.9, 0.999, 1e-8, self.learning_rate
        for t in tf.range(1, self.n_steps):
            g = self._loss_gradient(x, z)
            tf_t = tf.cast(t, tf.float32)
            m = m + (1.0 - b1) * (g - m)                                      # torch's lerp form
            v = b2 * v + (1.0 - b2) * tf.square(g)
            step = lr / (1.0 - tf.pow(b1, tf_t))
            denom = tf.sqrt(v) / tf.sqrt(1.0 - tf.pow(b2, tf_t)) + eps
            z = self._project(z - step * m / denom)
        losses, rec = self._losses(x, z)
        return {"losses": losses, "latents": z, "reconstructions": rec, "init_index": index}

    def _logits_with_gradient(self, x):
        """x [B,28,28,1] (already preprocessed) -> logits [B,10] with the envelope gradient."""
        scalings = self.scalings

        @tf.custom_gradient
        def logits_fn(x):
            out = self._search_fn(x)
            logits = -out["losses"] * scalings

            def grad(upstream):                                              # upstream [B,10]
                if self.gradient == "none":
                    return tf.zeros_like(x)
                # d(-loss_c)/dx = -2 (x - G_c(z*)) / 784, summed over classes with upstream.
                weights = upstream * scalings                                # [B,10]
                residual = x - out["reconstructions"]                        # [B,28,28,10]
                g = -2.0 / NUM_PIXELS * tf.einsum("bhwc,bc->bhw", residual, weights)
                return g[..., None]

            return logits, grad

        return logits_fn(x)

    def _logits(self, x):
        """Checked, preprocessed images -> logits, in chunks of ``max_batch`` when eager."""
        if tf.executing_eagerly() and x.shape[0] is not None and x.shape[0] > self.max_batch:
            return tf.concat([self._logits_fn(x[i:i + self.max_batch])
                              for i in range(0, x.shape[0], self.max_batch)], 0)
        return self._logits_fn(x)

    # ----------------------------------------------------------------------------- public
    @property
    def preprocessing(self):
        """The model's front end: ``BINARIZE`` for Binary ABS, else None."""
        return BINARIZE if self.binary else None

    def __call__(self, images):
        """images float32 [B,28,28,1] in [0,1] -> logits [B,10] (negative per-pixel losses,
        Binary ABS: scaled). The envelope gradient of Binary ABS passes straight through its
        binarization (module docstring)."""
        images = check_images(images)
        return self._logits(straight_through(BINARIZE, images) if self.binary else images)

    def logits_after_preprocessing(self, images):
        """Logits of images that already went through ``preprocessing`` (Binary ABS: binarized;
        ABS: the same as calling the model), with the envelope gradient w.r.t. these images:
        ``model(x) == model.logits_after_preprocessing(binarize(x))``. [B,28,28,1] -> [B,10]."""
        return self._logits(check_images(images))

    def search(self, images):
        """The full search result for images [B,28,28,1] in [0,1] (binarized first for Binary
        ABS): dict of ``losses`` [B,10] (unscaled class losses), ``latents`` [B,10,8],
        ``reconstructions`` [B,28,28,10] (sigmoid images of each class at its final latent),
        ``init_index`` [B,10] (best sample)."""
        x = check_images(images)
        if self.binary:
            x = BINARIZE(x)
        chunks = [self._search_fn(x[i:i + self.max_batch])
                  for i in range(0, max(int(x.shape[0]), 1), self.max_batch)]
        return {k: tf.concat([c[k] for c in chunks], 0) for k in chunks[0]}

    def predict_proba(self, images):
        """Calibrated probabilities [B,10] (scaled softmax with offset: low on garbage)."""
        return confidence_softmax(self(images))

    def search_config(self) -> dict:
        """The search's settings, for records (e.g. evaluate.py's summary.json)."""
        return dict(n_samples=self.n_samples, n_steps=self.n_steps, projection=self.projection,
                    binary=self.binary, xla=self.jit_compile, learning_rate=self.learning_rate,
                    radius=self.radius, beta=self.beta, gradient=self.gradient,
                    loss_scalings=[round(float(v), 6) for v in self.scalings.numpy()])

    def flops_per_image(self) -> dict:
        """Counted floating-point operations of one image's inference (original layer sizes):
        the selection is one [784] x [784, 10 S] product; each of the n_steps - 1 updates runs
        every class decoder forward and its input-gradient pass (the same multiply-adds), and the
        final evaluation one more forward."""
        select = 2 * NUM_PIXELS * NUM_CLASSES * self.n_samples
        updates = self.n_steps - 1
        search = NUM_CLASSES * (updates * 2 * DECODER_FLOPS + DECODER_FLOPS)
        return {"initial_selection": select, "latent_search": search, "total": select + search}

