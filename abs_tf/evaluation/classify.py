"""Bulk classification of an exported SavedModel (`abs_tf.export`) with Apache Beam's RunInference.

  python -m abs_tf.evaluation.classify --model_dir=exports/abs/1 --input='images/*.npy' --output=out/pred
  python -m abs_tf.evaluation.classify ... --runner=DataflowRunner --project=... --region=...   # Beam options

    written = classify_files("exports/cnn/1", ["shard-*.npy"], "out/pred")
    predictions = read_predictions(written)

Inputs (file patterns, local or any file system Beam reads): ``.npy`` arrays of float pixels in
[0, 1], [N,28,28,1] or [N,28,28], or uint8 pixels 0..255, [N,28,28] (divided by 255, as
`abs_tf.data`); or MNIST IDX image files (``*-idx3-ubyte``, optionally ``.gz``). The model is
TensorFlow's handler (`TFModelHandlerNumpy`) loading the SavedModel with `tf.saved_model.load`
(its own loader expects a Keras model) once per worker, and the signature is
``serving_default`` or, for ABS exports, ``explain``, which also gives the class losses.

Output: JSON lines in ``<output>-SSSSS-of-NNNNN.jsonl``, one per image: ``file``, ``index`` (the
image's row in its file), ``class``, ``probabilities`` [10], ``logits`` [10] and, from ``explain``,
``losses`` [10] (ABS's per-class losses, lower is better) and ``certified_l2`` where the export has it.
"""

from __future__ import annotations

import functools
import gzip
import io
import json
from typing import Optional

import numpy as np

try:
    import apache_beam as beam
    from apache_beam.io import fileio
    from apache_beam.io.filesystems import FileSystems
    from apache_beam.ml.inference.base import KeyedModelHandler, PredictionResult, RunInference
    from apache_beam.ml.inference.tensorflow_inference import TFModelHandlerNumpy
except ImportError as e:  # the optional dependency (requirements-beam.txt)
    raise ImportError("abs_tf.evaluation.classify needs Apache Beam (and tensorflow_hub, which its TensorFlow "
                      "handler imports): pip install -r requirements-beam.txt") from e

from abs_tf.constants import IMAGE_SHAPE
from abs_tf.data import IMAGE_MAGIC, parse_idx

# The outputs kept per image; reconstructions and latents of `explain` are dropped (large).
OUTPUTS = ("classes", "probabilities", "logits", "losses", "certified_l2")
SUFFIX = ".jsonl"


def read_images(path: str, raw: bytes) -> np.ndarray:
    """One input file's images, float32 [N,28,28,1] in [0,1] (module doc); ValueError naming the
    file and the problem otherwise."""
    if path.endswith(".npy"):
        try:
            array = np.load(io.BytesIO(raw), allow_pickle=False)
        except ValueError as e:
            raise ValueError(f"{path}: not a readable .npy array ({e})") from e
        if array.ndim == 4 and array.shape[3:] == (1,):
            array = array[..., 0]
        if array.ndim != 3 or array.shape[1:] != IMAGE_SHAPE[:2]:
            raise ValueError(f"{path}: images must be [N, 28, 28, 1] or [N, 28, 28], got {list(array.shape)}")
        if array.dtype == np.uint8:
            images = array.astype(np.float32) / 255.0
        elif np.issubdtype(array.dtype, np.floating):
            images = array.astype(np.float32)
            if not np.all(np.isfinite(images)):
                raise ValueError(f"{path}: images contain NaN or Inf")
            if images.size and (images.min() < 0 or images.max() > 1):
                raise ValueError(f"{path}: float pixels must be in [0, 1], got [{images.min()}, {images.max()}] "
                                 "(uint8 arrays hold 0..255)")
        else:
            raise ValueError(f"{path}: pixels must be uint8 (0..255) or float (0..1), got {array.dtype}")
    else:
        if raw[:2] == b"\x1f\x8b":   # gzip (Beam's reader has already decompressed a .gz it matched)
            try:
                raw = gzip.decompress(raw)
            except (OSError, EOFError) as e:
                raise ValueError(f"{path}: corrupt gzip stream ({e})") from e
        images = parse_idx(raw, expected_magic=IMAGE_MAGIC, path=path, expected_dims=IMAGE_SHAPE[:2])
        images = images.astype(np.float32) / 255.0
    return images[..., None]


def _keyed_images(readable):
    """fileio.ReadableFile -> ((path, index), image float32 [28,28,1]) per image."""
    path = readable.metadata.path
    for index, image in enumerate(read_images(path, readable.read())):
        yield (path, index), image


class SavedModelHandler(TFModelHandlerNumpy):
    """TensorFlow's numpy handler, loading an abs-tf export with `tf.saved_model.load` (the
    export is a `tf.Module` behind signatures, not a Keras model)."""

    def load_model(self):
        import tensorflow as tf

        return tf.saved_model.load(self._model_uri)


def _infer(model, batch, inference_args, model_id=None, *, signature: str):
    """RunInference's inference_fn: one call of ``signature`` on the stacked batch."""
    import tensorflow as tf

    del inference_args
    out = model.signatures[signature](images=tf.constant(np.stack(batch)))
    kept = {k: out[k].numpy() for k in OUTPUTS if k in out}
    return [PredictionResult(x, {k: v[i] for k, v in kept.items()}, model_id) for i, x in enumerate(batch)]


def _to_json(keyed) -> str:
    (path, index), result = keyed
    row = {"file": path, "index": int(index)}
    for key, value in result.inference.items():
        value = np.asarray(value)
        row["class" if key == "classes" else key] = value.tolist() if value.ndim else value.item()
    return json.dumps(row, sort_keys=True)


def signature_names(model_dir: str) -> list:
    """The signatures of the SavedModel at ``model_dir``, read from saved_model.pb (without
    loading the model: ABS decodes its samples when it loads)."""
    from tensorflow.core.protobuf import saved_model_pb2

    path = f"{model_dir.rstrip('/')}/saved_model.pb"
    proto = saved_model_pb2.SavedModel()
    try:
        with FileSystems.open(path) as f:
            proto.ParseFromString(f.read())
    except OSError as e:
        raise ValueError(f"{path}: cannot read the SavedModel ({e}); give an exported version, e.g. "
                         "exports/abs/1") from e
    return sorted({name for graph in proto.meta_graphs for name in graph.signature_def})


def choose_signature(names) -> str:
    """``explain`` where the export has it (ABS: class losses), else ``serving_default``."""
    return "explain" if "explain" in names else "serving_default"


def classify_files(model_dir: str, inputs, output: str, *, signature: Optional[str] = None, batch_size: int = 64,
                   pipeline_args=()) -> list:
    """Classifies every image of the files matching ``inputs`` (patterns) with the SavedModel
    at ``model_dir`` (module doc); returns the paths of the written ``.jsonl`` shards.

    signature: the export's signature to call (default `choose_signature`). batch_size: the
    largest batch per model call. pipeline_args: Beam's options (default: DirectRunner).
    Raises ValueError (no input, unknown signature or option, unreadable images).
    """
    from abs_tf.evaluation.beam_pipeline import new_pipeline, pipeline_options

    inputs = [inputs] if isinstance(inputs, str) else list(inputs)
    if not inputs:
        raise ValueError("inputs: give at least one file pattern")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    names = signature_names(model_dir)
    signature = signature or choose_signature(names)
    if signature not in names:
        raise ValueError(f"{model_dir} has no signature {signature!r}; it has {', '.join(names)}")
    stale = FileSystems.match([f"{output}-*-of-*{SUFFIX}"])[0].metadata_list
    if stale:   # an earlier run's shards, perhaps more than this run writes: replaced, never mixed
        FileSystems.delete([m.path for m in stale])
    handler = KeyedModelHandler(SavedModelHandler(model_dir, max_batch_size=batch_size,
                                                  inference_fn=functools.partial(_infer, signature=signature)))
    pipeline = new_pipeline(pipeline_options(pipeline_args))
    files = [pipeline | f"Match{k}" >> fileio.MatchFiles(pattern, empty_match_treatment="DISALLOW")
             for k, pattern in enumerate(inputs)]
    _ = (files | "Files" >> beam.Flatten()
         | "Read" >> fileio.ReadMatches()
         | "Images" >> beam.FlatMap(_keyed_images)
         | "Classify" >> RunInference(handler)
         | "Json" >> beam.Map(_to_json)
         | "Write" >> beam.io.WriteToText(output, file_name_suffix=SUFFIX))
    pipeline.run().wait_until_finish()
    return sorted(m.path for m in FileSystems.match([f"{output}-*-of-*{SUFFIX}"])[0].metadata_list)


def read_predictions(paths) -> dict:
    """The rows of written ``.jsonl`` shards, ordered by (file, index), as arrays: ``file`` [N]
    (str), ``index`` int64 [N], ``class`` int64 [N], ``probabilities``/``logits``/``losses``
    float32 [N,10], ``certified_l2`` float32 [N] (the keys present)."""
    rows = []
    for path in paths:
        with FileSystems.open(path) as f:
            rows.extend(json.loads(line) for line in f.read().decode().splitlines() if line.strip())
    rows.sort(key=lambda r: (r["file"], r["index"]))
    if not rows:
        return {}
    out = {"file": np.array([r["file"] for r in rows]), "index": np.array([r["index"] for r in rows], np.int64)}
    for key in rows[0]:
        if key not in out:
            out[key] = np.array([r[key] for r in rows], np.int64 if key == "class" else np.float32)
    return out


def _main():
    from absl import app, flags, logging

    flags.DEFINE_string("model_dir", None, "An exported SavedModel version, e.g. exports/abs/1.", required=True)
    flags.DEFINE_list("input", None, "File patterns of .npy arrays or MNIST IDX image files (gz or raw).",
                      required=True)
    flags.DEFINE_string("output", None, "Output prefix: <output>-SSSSS-of-NNNNN.jsonl.", required=True)
    flags.DEFINE_string("signature", None, "Signature to call (default: explain for ABS exports, else "
                        "serving_default).")
    flags.DEFINE_integer("batch_size", 64, "Largest batch per model call.", lower_bound=1)
    flags.DEFINE_string("runner", "DirectRunner", "Beam runner; other Beam options (--project, --region, "
                        "--direct_num_workers, ...) pass through.")

    def main(argv):
        try:
            written = classify_files(flags.FLAGS.model_dir, flags.FLAGS.input, flags.FLAGS.output,
                                     signature=flags.FLAGS.signature, batch_size=flags.FLAGS.batch_size,
                                     pipeline_args=[f"--runner={flags.FLAGS.runner}", *argv[1:]])
        except ValueError as e:
            raise app.UsageError(str(e))
        logging.info("wrote %s", ", ".join(written))   # the entry point's report (the library prints nothing)

    app.run(main, flags_parser=lambda argv: flags.FLAGS(argv, known_only=True))


if __name__ == "__main__":
    _main()
