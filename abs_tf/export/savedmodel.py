"""Export a registered model as a versioned SavedModel for TF Serving and any TF program.

    path = export_registered(ExportConfig(model="abs", export_base="exports", version=1))
    # exports/abs/1/{saved_model.pb, variables/, assets/abs_config.json}

The model is loaded in the variant its registry entry names for export
(``ModelSpec.export_options``: ABS without XLA kernels), wrapped in the checked signatures of
`abs_tf.export.signatures` and written atomically by `abs_tf.export.writer`. What the model
offers is read from its `ModelSpec` (family, probabilities, certified bounds), never from its
name. ABS's search settings are fixed at export; they travel in ``assets/abs_config.json`` and
the `config` signature. ABS's decoded samples are decoded when the SavedModel loads
(`abs_tf.export.decoded_samples`) unless ``store_decoded_samples``.
"""

from __future__ import annotations

import dataclasses
import json
import tempfile
from pathlib import Path
from typing import Mapping, Optional

import tensorflow as tf

from abs_tf import registry
from abs_tf.export import writer
from abs_tf.export.decoded_samples import serving_abs
from abs_tf.export.signatures import ServingModule

ABS_CONFIG_FILE = "abs_config.json"


@dataclasses.dataclass(frozen=True)
class ExportConfig:
    """One export.

    model: a registered model name (`abs_tf.registry.names`).
    export_base: the root of the versioned tree; the export goes to <export_base>/<model>/<version>.
    version: an integer >= 1 (default: one more than the highest present).
    weights: the model's weights directory (default: its registry default).
    xla: export the XLA-compiled variant (`export_model`; default: no XLA, as TF Serving's CPU JIT
      is off by default).
    store_decoded_samples: ABS: store the decoded samples (~240 MB) instead of decoding them at load.
    options: search options for `registry.load_model` (ABS: n_samples, n_steps, ...).
    provenance: extra entries for the artifact's configuration (e.g. the abs-tf commit).
    """
    model: str
    export_base: str
    version: Optional[int] = None
    weights: Optional[str] = None
    xla: bool = False
    store_decoded_samples: bool = False
    options: Mapping = dataclasses.field(default_factory=dict)
    provenance: Mapping = dataclasses.field(default_factory=dict)

    def __post_init__(self):
        registry.get_spec(self.model)                         # KeyError naming the registered models
        if self.version is not None:
            writer.check_version(self.version)


def export_settings(name: str, spec, model, *, xla: str, store_decoded_samples: bool, provenance=None) -> dict:
    """The artifact's configuration (JSON-serialisable): the model, how it was exported (``xla``:
    "none", "kernels" or "full") and, for ABS models, ``abs_search``: the search settings fixed in it."""
    settings = {"model": name, "description": spec.description, "family": spec.family,
                "front_end": spec.front_end or "none",
                "probabilities": "calibrated" if spec.calibrated_probabilities else "softmax",
                "xla": xla, "tensorflow": tf.__version__, **dict(provenance or {})}
    if spec.family == "abs":
        search = dict(model.search_config(), xla=xla)
        search["decoded_samples"] = "stored" if store_decoded_samples else "decoded_at_load"
        settings["abs_search"] = search
    return settings


def export_model(model, spec, name: str, export_base, version=None, *, xla: bool = False,
                 store_decoded_samples: bool = False, provenance=None) -> Path:
    """Exports ``model`` (described by ``spec``, a `registry.ModelSpec`) to
    <export_base>/<name>/<version>/ and returns that path.

    xla: export the compiled variant: ABS models with the XLA kernels of their search (the
      fastest on CPU; XLA-compiling the whole search is 2-8x slower there, README's Export
      section), the others XLA-compiled as a whole.
    Raises FileExistsError for an existing version, ValueError for a version < 1.
    """
    directory = writer.model_dir(export_base, name)
    if version is not None:                                   # refuse before the (slow) tracing
        version = writer.check_version(version)
        if (directory / str(version)).exists():
            raise FileExistsError(f"{directory / str(version)} exists; exported versions are never overwritten: "
                                  "choose another version")
    is_abs = spec.family == "abs"
    mode = ("kernels" if is_abs else "full") if xla else "none"
    if mode == "kernels":
        model = model.variant(xla_kernels=True)
    settings = export_settings(name, spec, model, xla=mode, store_decoded_samples=store_decoded_samples,
                               provenance=provenance)
    if is_abs and not store_decoded_samples:
        model = serving_abs(model)
    with tempfile.TemporaryDirectory() as tmp:
        asset = None
        if is_abs:
            asset = Path(tmp) / ABS_CONFIG_FILE
            asset.write_text(json.dumps(settings, indent=2, sort_keys=True) + "\n")
        module = ServingModule(model, spec, settings, jit_compile=mode == "full", asset=asset)
        return writer.save_version(module, module.signatures(), directory, version)


def export_registered(config: ExportConfig) -> Path:
    """Loads the registered model in its export variant and exports it (see `ExportConfig`)."""
    spec = registry.get_spec(config.model)
    model = registry.load_model(config.model, config.weights, **{**config.options, **spec.export_options})
    return export_model(model, spec, config.model, config.export_base, config.version, xla=config.xla,
                        store_decoded_samples=config.store_decoded_samples, provenance=config.provenance)
