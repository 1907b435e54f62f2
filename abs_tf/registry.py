"""One registry of the project's models: name -> how to build it and how to load its weights.

Every model, whatever its kind, is called the same way:

    model = registry.load_model("cnn")          # shipped weights from weights/cnn/
    logits = model(images)                      # float32 [B,28,28,1] in [0,1] -> [B,10]

and checks its input with `abs_tf.checks.check_images`. Attacks, evaluation and export go
through this registry and never special-case a model.

``build_model(name)`` gives an untrained (randomly initialised) model for training;
``load_model(name, weights_dir=None)`` gives the trained one (``weights_dir`` defaults to
``<repo>/weights/<name>/``). Models that need no training (nearest neighbour) or take their
weights from the original release (``cnn_official``) ignore what does not apply.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Callable, Optional

REPO_ROOT = Path(__file__).resolve().parent.parent
WEIGHTS_ROOT = REPO_ROOT / "weights"
# The original release's exported files, in ../shared beside the repository (read-only).
OFFICIAL_CNN_WEIGHTS = REPO_ROOT.parent / "shared" / "reference" / "abs_official" / "cnn_weights.npz"


@dataclasses.dataclass(frozen=True)
class ModelSpec:
    """How to get one model.

    build: ``build() -> model`` with fresh (untrained) weights.
    load: ``load(weights_dir: Path) -> model`` with trained weights.
    description: one line for listings and README tables.
    trainable: whether ``train.py --model=<name>`` trains it.
    """
    build: Callable
    load: Callable
    description: str
    trainable: bool = True


def _weights_file(weights_dir: Path) -> Path:
    from abs_tf.training.classifier import WEIGHTS_FILE
    path = Path(weights_dir) / WEIGHTS_FILE
    if not path.is_file():
        raise FileNotFoundError(f"model weights not found: {path} (train with train.py, or pass weights_dir)")
    return path


def _classifier(architecture: str, binary: bool = False):
    def build():
        from abs_tf.models.cnn import ImageClassifier
        return ImageClassifier(architecture, binary=binary)

    def load(weights_dir):
        model = build()
        path = _weights_file(weights_dir)
        try:
            model.load_weights(path)
        except Exception as e:  # h5py/keras raise assorted types for corrupt or mismatched files
            raise ValueError(f"cannot load weights {path} into {model.name}: {type(e).__name__}: {e}") from e
        return model
    return build, load


def _official_cnn(binary: bool):
    def load(weights_dir=None):
        from abs_tf.models.cnn import load_official_cnn
        path = Path(weights_dir) / "cnn_weights.npz" if weights_dir else OFFICIAL_CNN_WEIGHTS
        return load_official_cnn(path, binary=binary)
    return load


def _nearest_neighbor_load(weights_dir=None):
    from abs_tf.models.nearest_neighbor import NearestNeighbor
    return NearestNeighbor.from_mnist()


def _abs(binary: bool):
    def load(weights_dir=None):
        from abs_tf.models.abs.model import ABS
        return ABS.from_weights(weights_dir or WEIGHTS_ROOT / "abs_vae", binary=binary)
    return load


def _abs_official(binary: bool):
    def load(weights_dir=None):
        from abs_tf.models.abs.model import ABS
        return ABS.from_official_dir(weights_dir or OFFICIAL_CNN_WEIGHTS.parent, binary=binary)
    return load


MODELS = {
    "cnn": ModelSpec(*_classifier("abs_cnn"), "CNN of the original release (layout.txt section 6), trained here"),
    "binary_cnn": ModelSpec(*_classifier("abs_cnn", binary=True),
                            "the same CNN on inputs binarized at 0.5 (binarization inside the model), trained here"),
    "madry": ModelSpec(*_classifier("madry"),
                       "Madry et al. MNIST network, L-infinity adversarial training at eps 0.3 (reduced budget)"),
    "substitute": ModelSpec(*_classifier("substitute"),
                            "substitute CNN for transfer attacks (other architecture and seed)"),
    "nearest_neighbor": ModelSpec(_nearest_neighbor_load, _nearest_neighbor_load,
                                  "nearest neighbour: logits = -(smallest L2 distance to a training image of the class)",
                                  trainable=False),
    "cnn_official": ModelSpec(_official_cnn(False), _official_cnn(False),
                              "the original release's CNN with its converted PyTorch weights", trainable=False),
    "binary_cnn_official": ModelSpec(_official_cnn(True), _official_cnn(True),
                                     "the original release's binary CNN (binarize, then the vanilla CNN weights)",
                                     trainable=False),
    "abs": ModelSpec(_abs(binary=False), _abs(binary=False),
                     "ABS: ten class VAEs trained here (weights/abs_vae), latent search (8000 samples, 50 steps)",
                     trainable=False),
    "binary_abs": ModelSpec(_abs(binary=True), _abs(binary=True),
                            "Binary ABS: inputs binarized at 0.5, per-class loss scalings", trainable=False),
    "abs_official": ModelSpec(_abs_official(binary=False), _abs_official(binary=False),
                              "the original release's ABS weights and latent samples, converted", trainable=False),
    "binary_abs_official": ModelSpec(_abs_official(binary=True), _abs_official(binary=True),
                                     "the original release's Binary ABS, converted", trainable=False),
}


def names(trainable_only: bool = False):
    """Registered model names (sorted)."""
    return sorted(n for n, s in MODELS.items() if s.trainable or not trainable_only)


def get_spec(name: str) -> ModelSpec:
    if name not in MODELS:
        raise KeyError(f"unknown model {name!r}; registered models: {', '.join(names())}")
    return MODELS[name]


def build_model(name: str):
    """A fresh model (untrained weights where it has any)."""
    return get_spec(name).build()


def default_weights_dir(name: str) -> Path:
    return WEIGHTS_ROOT / name


def load_model(name: str, weights_dir: Optional[str] = None):
    """The trained model ``name``; weights from ``weights_dir`` or ``weights/<name>/``."""
    spec = get_spec(name)
    if weights_dir:
        return spec.load(Path(weights_dir))
    return spec.load(default_weights_dir(name) if spec.trainable else None)
