"""The `tf.Module` an export saves: its signatures, their inputs and outputs.

Signatures (all inputs are named ``images``; B may be 0):

  serving_default  images float32 [B,28,28,1], pixels in [0,1]
                   -> probabilities float32 [B,10], logits float32 [B,10], classes int64 [B]
  classify_uint8   images uint8 [B,28,28], pixels 0..255 (as clients send them; divided by 255)
                   -> the same outputs as serving_default
  explain          (ABS models) images float32 [B,28,28,1] in [0,1] -> the outputs of
                   serving_default plus losses, reconstructions, latents and, for ABS (not
                   Binary ABS), certified_l2 (`abs_tf.export.explain`)
  config           no input -> json (string scalar: the export's settings, as in
                   assets/abs_config.json for ABS models) and, for ABS models, each search
                   setting as its own output (n_samples, n_steps, learning_rate, ...)

probabilities are the model's (ABS: calibrated, `abs_tf.models.abs.confidence`; else softmax).
The input specs leave the rank and every dimension open (``saved_model_cli`` shows "unknown
rank") so that the checks inside the graph, not TensorFlow's shape inference, refuse a wrong
shape, with an `InvalidArgumentError` naming it (``images must have shape [B, 28, 28, 1], got
[2, 28, 28, 4]``); NaN/Inf and pixels outside [0,1] are refused the same way
(`abs_tf.checks.check_images`).

XLA: with ``jit_compile=True`` the model's computation is one XLA-compiled function (compiled
per batch size, on the first request of that size); the input checks stay outside it, because
XLA drops assertions.
"""

from __future__ import annotations

import json

import tensorflow as tf

from abs_tf.checks import check_images
from abs_tf.constants import IMAGE_SHAPE
from abs_tf.export.explain import certified_l2
from abs_tf.models.preprocessing import front_end

SERVING_DEFAULT, CLASSIFY_UINT8, EXPLAIN, CONFIG = "serving_default", "classify_uint8", "explain", "config"
INPUT = "images"
# Unknown rank: a graph traced for rank 4 (or 3) misreads inputs of another rank before any check runs.
FLOAT_IMAGES = tf.TensorSpec(None, tf.float32, name=INPUT)
UINT8_IMAGES = tf.TensorSpec(None, tf.uint8, name=INPUT)
_UINT8_SHAPE = "[B, " + ", ".join(str(d) for d in IMAGE_SHAPE[:2]) + "]"


def uint8_to_images(pixels) -> tf.Tensor:
    """uint8 [B,28,28] pixels 0..255 -> float32 [B,28,28,1] in [0,1] (x / 255, as `abs_tf.data`);
    any other shape fails at run time with an InvalidArgumentError naming it."""
    shape = tf.shape(pixels)
    padded = tf.concat([shape, tf.zeros([3], tf.int32)], 0)          # safe to index at any rank
    ok = tf.logical_and(tf.equal(tf.size(shape), 3), tf.reduce_all(tf.equal(padded[1:3], IMAGE_SHAPE[:2])))
    got = tf.strings.reduce_join(tf.strings.as_string(shape), separator=", ")
    message = tf.strings.join([f"{INPUT} (uint8 pixels 0..255) must have shape {_UINT8_SHAPE}, got [", got, "]"])
    with tf.control_dependencies([tf.debugging.Assert(ok, [message])]):
        return tf.cast(pixels, tf.float32)[..., None] / 255.0


def _typed_constants(settings: dict) -> dict:
    """Each JSON-like setting as a tensor: bool, int64, float32, string, or a float32 vector."""
    out = {}
    for key, value in settings.items():
        if isinstance(value, bool):
            out[key] = tf.constant(value)
        elif isinstance(value, int):
            out[key] = tf.constant(value, tf.int64)
        elif isinstance(value, float) or (isinstance(value, list) and all(isinstance(v, float) for v in value)):
            out[key] = tf.constant(value, tf.float32)
        elif isinstance(value, str):
            out[key] = tf.constant(value)
    return out


class ServingModule(tf.Module):
    """The exported object: ``model`` behind checked signatures (module docstring).

    Args:
      model: images [B,28,28,1] -> logits [B,10], with ``preprocessing`` where it binarizes
        (an ABS model, a Keras classifier or the nearest neighbour).
      spec: its `abs_tf.registry.ModelSpec` (probabilities, family, certified bounds).
      config: the export's settings (JSON-serialisable); ``config["abs_search"]``, when
        present, is also returned setting by setting by the `config` signature.
      jit_compile: XLA-compile the model's computation (network or latent search) as a whole.
      asset: path of a file to ship in the SavedModel's assets/ (e.g. abs_config.json), or None.
    """

    def __init__(self, model, spec, config: dict, *, jit_compile: bool = False, asset=None):
        super().__init__(name="serving")
        self.model = model
        if asset is not None:
            self.config_file = tf.saved_model.Asset(str(asset))
        probabilities = spec.probabilities
        logits_of = tf.function(lambda x: model(x), jit_compile=True) if jit_compile else model

        def classify(images):
            logits = logits_of(check_images(images))
            return {"probabilities": probabilities(logits), "logits": logits, "classes": tf.argmax(logits, -1)}

        self.serving_default = tf.function(classify, input_signature=[FLOAT_IMAGES])
        self.classify_uint8 = tf.function(lambda images: classify(uint8_to_images(images)),
                                          input_signature=[UINT8_IMAGES])
        if spec.family == "abs":
            self.explain = tf.function(self._explainer(model, probabilities, spec.certified_bounds, jit_compile),
                                       input_signature=[FLOAT_IMAGES])
        constants = {"json": json.dumps(config, sort_keys=True), **config.get("abs_search", {})}
        self.config = tf.function(lambda: _typed_constants(constants), input_signature=[])

    def signatures(self) -> dict:
        """Signature name -> function, for `tf.saved_model.save`."""
        names = (SERVING_DEFAULT, CLASSIFY_UINT8, EXPLAIN, CONFIG)
        return {name: getattr(self, name) for name in names if hasattr(self, name)}

    @staticmethod
    def _explainer(model, probabilities, certified: bool, jit_compile: bool):
        """images -> the explain outputs of an ABS ``model`` (one search per image)."""
        # `_search_fn` is the search on checked, preprocessed images in graph mode (`ABS.search`
        # needs a known batch size).
        search = tf.function(model._search_fn, jit_compile=True) if jit_compile else model._search_fn
        preprocessing = front_end(model)

        def explain(images):
            x = check_images(images)
            if preprocessing is not None:
                x = preprocessing(x)
            out = search(x)
            logits = -out["losses"] * model.scalings          # as ABS's own call computes them
            result = {"probabilities": probabilities(logits), "logits": logits, "classes": tf.argmax(logits, -1),
                      "losses": out["losses"], "reconstructions": out["reconstructions"], "latents": out["latents"]}
            if certified:
                result["certified_l2"] = certified_l2(x, out["reconstructions"], out["latents"], result["classes"],
                                                      model.beta)
            return result

        return explain
