"""Saving and loading the class VAEs' weights (``vae_{c}.weights.h5``), identity-checked.

Each file carries its identity (`abs_tf.models.weights_identity`): model "abs_vae",
architecture "class_vae" and its class, so a file copied over another class's is refused.
"""

from __future__ import annotations

from pathlib import Path

from abs_tf.constants import NUM_CLASSES
from abs_tf.models import weights_identity
from abs_tf.models.abs.vae import ClassVAE, build_vae

WEIGHTS_PATTERN = "vae_{}.weights.h5"
IDENTITY = dict(model="abs_vae", architecture="class_vae")


def save_vae_weights(vae: ClassVAE, path, class_id: int) -> None:
    """Saves a class VAE's weights and stamps the file with what it holds (model, class)."""
    vae.save_weights(path)
    weights_identity.stamp(path, class_id=class_id, **IDENTITY)


def load_vae_weights(vae: ClassVAE, path, class_id: int) -> None:
    """Loads ``path`` into ``vae`` after checking that it holds the VAE of ``class_id``."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"VAE weights for class {class_id} not found: {path}")
    try:
        vae.load_weights(path)
    except Exception as e:  # h5py/keras raise assorted types for corrupt files
        raise ValueError(f"cannot load VAE weights {path}: {type(e).__name__}: {e}") from e
    # After loading, so that a corrupt file is reported as such; a refused file leaves `vae` unusable.
    weights_identity.check(path, class_id=class_id, allow_missing=False, **IDENTITY)


def load_vaes(weights_dir, classes=range(NUM_CLASSES), beta: float = 1.0):
    """The class VAEs ``vae_{c}.weights.h5`` of a directory, as a list in the order of ``classes``.

    Raises FileNotFoundError naming the missing file, `weights_identity.WeightsIdentityError`
    for a file that holds another class (or carries no identity), ValueError for a corrupt one.
    """
    weights_dir = Path(weights_dir)
    vaes = []
    for c in classes:
        vae = build_vae(beta=beta)
        load_vae_weights(vae, weights_dir / WEIGHTS_PATTERN.format(c), c)
        vaes.append(vae)
    return vaes
