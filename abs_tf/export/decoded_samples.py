"""ABS's decoded samples in a SavedModel: decoded when the model loads, not stored.

The first stage of the ABS search compares an image with the ten class decoders' images of
every fixed latent sample: 10 x 8000 x 784 float32, ~240 MB (`ABS.reconstructions_t`, [784, 10 S],
and their squared norms [10, S]). Stored as variables they make each SavedModel ~240 MB. Here
they are two resource variables that no checkpoint holds: a `LoadTimeVariable`'s initializer
decodes the latent samples with the decoder weights (both ~1 MB in the graph) when the model is
loaded. TensorFlow runs that initializer in `tf.saved_model.load` and, through the SavedModel's
``__saved_model_init_op``, in TF Serving, ``saved_model_cli run`` and any C++ or TF1 loader.
The measured trade-off (size, load time, first request) is in README's Export section.

Each variable's ``shared_name`` is unique per export; the Python loader appends a suffix per
load, so two loaded copies never share or free each other's values, and a deleted copy frees
its variables (``_destroy_resource``).
"""

from __future__ import annotations

import uuid

import tensorflow as tf

from abs_tf.constants import NUM_CLASSES, NUM_PIXELS
from abs_tf.models.abs.model import ABS

DECODE_CHUNK = 250   # latent samples decoded at once at load time: ~100 MB of decoder activations


class LoadTimeVariable(tf.saved_model.experimental.TrackableResource):
    """A float32 resource variable that is no `tf.Variable`: not checkpointed (so not stored in the
    SavedModel) and not copied by `keras.layers.TFSMLayer`. Its value is assigned by ``fill``
    (a function of no arguments, traced into the SavedModel's initializer) when the SavedModel
    loads; a variable without ``fill`` is assigned by another one's ``fill``.

    shape: the static shape of its value (None for unknown dimensions).
    """

    def __init__(self, name: str, shape, fill=None):
        self._shape = tf.TensorShape(shape)
        self._shared_name = f"{name}_{uuid.uuid4().hex}"
        self._fill = fill
        super().__init__()
        self.resource_handle  # noqa: B018  (created now, eagerly: functions capture this handle)

    def _create_resource(self):
        return tf.raw_ops.VarHandleOp(dtype=tf.float32, shape=self._shape, shared_name=self._shared_name)

    def _initialize(self):
        if self._fill is not None:
            self._fill()

    def _destroy_resource(self):
        tf.raw_ops.DestroyResourceOp(resource=self.resource_handle, ignore_lookup_error=True)

    def assign(self, value):
        return tf.raw_ops.AssignVariableOp(resource=self.resource_handle, value=tf.ensure_shape(value, self._shape))

    def read(self) -> tf.Tensor:
        value = tf.raw_ops.ReadVariableOp(resource=self.resource_handle, dtype=tf.float32)
        value.set_shape(self._shape)
        return value


def decode_samples_into(decoder, samples, table: LoadTimeVariable, norms: LoadTimeVariable,
                        chunk: int = DECODE_CHUNK):
    """Writes every class decoder's image of every latent sample into ``table`` and its squared
    norm into ``norms``, in the layout of ABS's cache, one chunk of samples at a time (peak memory:
    the table and one chunk's decoder activations, no full-size temporaries).

    Args:
      decoder: an ABS model's `StackedDecoder` (latents [N,10,8] -> logits [N,28,28,10]).
      samples: float32 [S, 8] latent samples (S static).
      table: receives float32 [784, 10 S], column c*S + s = sigmoid(G_c(z_s)) flattened
        (``ABS.reconstructions_t``); norms: receives float32 [10, S] (``ABS.reconstruction_sq_norms``).
    Returns the op that finishes the writes (graph-friendly: one `tf.while_loop`).
    """
    n = int(samples.shape[0])
    start_ops = [table.assign(tf.zeros([NUM_PIXELS, NUM_CLASSES * n])), norms.assign(tf.zeros([NUM_CLASSES, n]))]

    def write(handle, begin, end, value):
        return tf.raw_ops.ResourceStridedSliceAssign(ref=handle, begin=begin, end=end, strides=[1, 1], value=value)

    def body(start):
        z = samples[start:start + chunk]                                  # the last chunk may be shorter
        end = start + tf.shape(z)[0]
        images = tf.sigmoid(decoder(tf.tile(z[:, None, :], [1, NUM_CLASSES, 1]), xla_kernels=False))
        per_class = tf.transpose(tf.reshape(images, [-1, NUM_PIXELS, NUM_CLASSES]), [2, 1, 0])   # [10, 784, k]
        writes = [write(table.resource_handle, tf.stack([0, c * n + start]), tf.stack([NUM_PIXELS, c * n + end]),
                        per_class[c]) for c in range(NUM_CLASSES)]
        writes.append(write(norms.resource_handle, tf.stack([0, start]), tf.stack([NUM_CLASSES, end]),
                            tf.reduce_sum(tf.square(per_class), 1)))
        with tf.control_dependencies(writes):
            return [tf.identity(end)]

    with tf.control_dependencies(start_ops):
        first = tf.constant(0)
    return tf.while_loop(lambda start: start < n, body, [first], parallel_iterations=1)


class _ABSWithLoadTimeSamples(ABS):
    """ABS reading its decoded samples from two `LoadTimeVariable`s (set by `serving_abs`)."""

    # ABS's constructor assigns these attributes; here they are read from the variables instead.
    reconstructions_t = property(lambda self: self._decoded[0].read(), lambda self, value: None)
    reconstruction_sq_norms = property(lambda self: self._decoded[1].read(), lambda self, value: None)


def serving_abs(model: ABS, chunk: int = DECODE_CHUNK) -> ABS:
    """An ABS with ``model``'s decoders, latent samples and search settings whose decoded samples
    are computed when its SavedModel is loaded instead of being stored in it.

    Its search is that of ``model`` (the same methods); only where the first stage's table comes
    from differs. ``chunk``: latent samples decoded at once when loading. Calling it before
    export-and-load fails (the variables are still empty).
    """
    # ABS applies scalings only when binary (then `scalings` are its binary scalings).
    settings = dict(binary=model.binary, binary_scalings=model.scalings.numpy() if model.binary else None,
                    n_steps=model.n_steps, learning_rate=model.learning_rate, radius=model.radius, beta=model.beta,
                    projection=model.projection, gradient=model.gradient, jit_compile=model.jit_compile,
                    max_batch=model.max_batch, xla_kernels=model.xla_kernels)
    samples = model.samples.numpy()
    # `_shared` is ABS's own way to build a variant on an existing decoder stack (ABS.variant).
    serving = _ABSWithLoadTimeSamples(None, None, name=model.name, _shared=dict(
        decoder=model.decoder, samples=samples, reconstructions_t=None, reconstruction_sq_norms=None), **settings)
    norms = LoadTimeVariable("abs_reconstruction_sq_norms", [NUM_CLASSES, len(samples)])

    def fill():
        return decode_samples_into(serving.decoder, serving.samples, table_variable, norms, chunk)

    table_variable = LoadTimeVariable("abs_decoded_samples", [NUM_PIXELS, NUM_CLASSES * len(samples)], fill)
    serving._decoded = (table_variable, norms)
    return serving
