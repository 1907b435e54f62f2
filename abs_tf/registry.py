"""One registry of the project's models: name -> what the model offers and how to get it.

Every model, whatever its kind, is called the same way:

    model = registry.load_model("cnn")          # shipped weights from <repo>/weights/cnn/
    logits = model(images)                      # float32 [B,28,28,1] in [0,1] -> [B,10]

and checks its input with `abs_tf.checks.check_images`. Drivers (evaluate.py, export/) never
test model names: they ask the model's `ModelSpec` what it offers (calibrated probabilities,
certified bounds, a binarizing front end, options for the export) and pass options through
``load_model(name, weights_dir=None, **options)``; e.g.
``load_model("abs", n_samples=1000, n_steps=20)``. A model refuses options it does not
accept, naming them.

``build_model(name)`` gives an untrained (randomly initialised) model for training; models
without training of their own (ABS, nearest neighbour, the release's converted models) give
the same as ``load_model``. Default weights come from the package (``<repo>/weights/...``) or,
for the release's converted models, from `abs_tf.paths.reference_dir`, never from the working
directory. Trained classifier weights carry their identity (`abs_tf.models.weights_identity`,
``ModelSpec.identity``) and loading checks it.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Callable, Mapping, Optional

from abs_tf import paths
from abs_tf.models import weights_identity

FAMILIES = ("abs", "classifier", "nearest_neighbor")
# Options of the ABS search that `load_model` passes to `ABS.from_weights` / `ABS.from_official_dir`.
ABS_OPTIONS = ("n_samples", "seed", "n_steps", "learning_rate", "radius", "beta", "projection", "gradient",
               "jit_compile", "max_batch", "xla_kernels", "binary_scalings")
# The release's converted ABS comes with its own 8000 latent samples.
OFFICIAL_ABS_OPTIONS = tuple(o for o in ABS_OPTIONS if o not in ("n_samples", "seed"))


@dataclasses.dataclass(frozen=True)
class ModelSpec:
    """What one model offers and how to get it.

    build: ``build(**options) -> model`` with fresh (untrained) weights.
    load: ``load(weights_dir: Path | None, **options) -> model`` with trained weights.
    description: one line for listings and README tables.
    family: one of ``FAMILIES``.
    trainable: whether ``train.py --model=<name>`` trains it.
    front_end: "binarize" if the model binarizes its input (it then declares
      ``model.preprocessing``, `abs_tf.models.preprocessing`), else None.
    calibrated_probabilities: its probabilities are ABS's calibrated scaled softmax
      (`probabilities`), not a plain softmax of the logits.
    certified_bounds: ``abs_tf.models.abs.certify.logits_and_bounds`` gives per-image
      certified-L2 estimates for it.
    search_options: names of the options ``load_model`` accepts for it.
    export_options: options of the variant to export as a SavedModel (ABS: without XLA
      kernels, which TF Serving does not run by default).
    default_weights: ``() -> Path`` of its weights when none are given, or None.
    identity: the identity its weights files carry (trainable models), or None.
    """
    build: Callable
    load: Callable
    description: str
    family: str
    trainable: bool = False
    front_end: Optional[str] = None
    calibrated_probabilities: bool = False
    certified_bounds: bool = False
    search_options: tuple = ()
    export_options: Mapping = dataclasses.field(default_factory=dict)
    default_weights: Optional[Callable[[], Path]] = None
    identity: Optional[Mapping] = None

    def __post_init__(self):
        if self.family not in FAMILIES:
            raise ValueError(f"family must be one of {FAMILIES}, got {self.family!r}")

    def check_options(self, name: str, options: Mapping):
        """TypeError naming the options ``name`` does not accept."""
        unknown = sorted(set(options) - set(self.search_options))
        if unknown:
            accepted = ", ".join(self.search_options) if self.search_options else "none"
            raise TypeError(f"model {name!r} does not accept the option(s) {', '.join(unknown)} "
                            f"(it accepts: {accepted})")

    def probabilities(self, logits):
        """Probabilities [B,10] from the model's logits [B,10] (a TF tensor)."""
        import tensorflow as tf

        if self.calibrated_probabilities:
            from abs_tf.models.abs.confidence import confidence_softmax
            return confidence_softmax(logits)
        return tf.nn.softmax(logits)


def _weights_file(weights_dir: Path) -> Path:
    from abs_tf.models.cnn import WEIGHTS_FILE
    path = Path(weights_dir) / WEIGHTS_FILE
    if not path.is_file():
        raise FileNotFoundError(f"model weights not found: {path} (train with train.py, or pass weights_dir)")
    return path


def _classifier(name: str, architecture: str, description: str, binary: bool = False) -> ModelSpec:
    identity = weights_identity.identity(name, architecture)

    def build():
        from abs_tf.models.cnn import ImageClassifier
        return ImageClassifier(architecture, binary=binary)

    def load(weights_dir):
        path = _weights_file(weights_dir)
        weights_identity.check(path, **identity)
        model = build()
        try:
            model.load_weights(path)
        except Exception as e:  # h5py/keras raise assorted types for corrupt or mismatched files
            raise ValueError(f"cannot load weights {path} into {model.name}: {type(e).__name__}: {e}") from e
        return model

    return ModelSpec(build, load, description, family="classifier", trainable=True,
                     front_end="binarize" if binary else None,
                     default_weights=lambda: paths.shipped_weights_dir(name), identity=identity)


def _official_cnn(description: str, binary: bool) -> ModelSpec:
    def load(weights_dir):
        from abs_tf.models.cnn import load_official_cnn
        return load_official_cnn(Path(weights_dir) / "cnn_weights.npz", binary=binary)

    return ModelSpec(lambda: load(paths.reference_dir()), load, description, family="classifier",
                     front_end="binarize" if binary else None, default_weights=paths.reference_dir)


def _nearest_neighbor(description: str) -> ModelSpec:
    def load(weights_dir=None):
        from abs_tf.models.nearest_neighbor import NearestNeighbor
        return NearestNeighbor.from_mnist()    # its "weights" are the training images

    return ModelSpec(load, load, description, family="nearest_neighbor")


def _abs(description: str, binary: bool, official: bool, weights: str = "abs_vae") -> ModelSpec:
    def load(weights_dir, **options):
        from abs_tf.models.abs.model import ABS
        if official:
            return ABS.from_official_dir(weights_dir, binary=binary, **options)
        return ABS.from_weights(weights_dir, binary=binary, **options)

    default = paths.reference_dir if official else (lambda: paths.shipped_weights_dir(weights))
    return ModelSpec(lambda **options: load(default(), **options), load, description, family="abs",
                     front_end="binarize" if binary else None, calibrated_probabilities=True,
                     # A bound on the binarized input is no certificate for the raw input.
                     certified_bounds=not binary,
                     search_options=OFFICIAL_ABS_OPTIONS if official else ABS_OPTIONS,
                     export_options={"xla_kernels": False}, default_weights=default)


MODELS = {
    "cnn": _classifier("cnn", "abs_cnn", "CNN of the original release (layout.txt section 6), trained here"),
    "binary_cnn": _classifier("binary_cnn", "abs_cnn", "the same CNN on inputs binarized at 0.5 (binarization "
                              "inside the model), trained here", binary=True),
    "madry": _classifier("madry", "madry",
                         "Madry et al. MNIST network, L-infinity adversarial training at eps 0.3 (reduced budget)"),
    "substitute": _classifier("substitute", "substitute",
                              "substitute CNN for transfer attacks (other architecture and seed)"),
    "nearest_neighbor": _nearest_neighbor(
        "nearest neighbour: logits = -(smallest L2 distance to a training image of the class)"),
    "cnn_official": _official_cnn("the original release's CNN with its converted PyTorch weights", binary=False),
    "binary_cnn_official": _official_cnn("the original release's binary CNN (binarize, then the vanilla CNN "
                                         "weights)", binary=True),
    "abs": _abs("ABS: ten class VAEs trained here (weights/abs_vae), latent search (8000 samples, 50 steps)",
                binary=False, official=False),
    "binary_abs": _abs("Binary ABS: inputs binarized at 0.5, per-class loss scalings", binary=True, official=False),
    "abs_stage7": _abs("ABS with the purely generative VAEs the shipped ones were fine-tuned from "
                       "(weights/abs_vae_stage7)", binary=False, official=False, weights="abs_vae_stage7"),
    "abs_official": _abs("the original release's ABS weights and latent samples, converted",
                         binary=False, official=True),
    "binary_abs_official": _abs("the original release's Binary ABS, converted", binary=True, official=True),
}


def names(trainable_only: bool = False):
    """Registered model names (sorted)."""
    return sorted(n for n, s in MODELS.items() if s.trainable or not trainable_only)


def get_spec(name: str) -> ModelSpec:
    if name not in MODELS:
        raise KeyError(f"unknown model {name!r}; registered models: {', '.join(names())}")
    return MODELS[name]


def build_model(name: str, **options):
    """A fresh model (untrained weights where it has any)."""
    spec = get_spec(name)
    spec.check_options(name, options)
    return spec.build(**options)


def default_weights_dir(name: str) -> Optional[Path]:
    """Where ``load_model(name)`` reads weights when none are given (None: it has none)."""
    spec = get_spec(name)
    return spec.default_weights() if spec.default_weights else None


def load_model(name: str, weights_dir=None, **options):
    """The trained model ``name``: weights from ``weights_dir`` or `default_weights_dir`;
    ``options`` go to its constructor (see ``ModelSpec.search_options``)."""
    spec = get_spec(name)
    spec.check_options(name, options)
    return spec.load(Path(weights_dir) if weights_dir else default_weights_dir(name), **options)
