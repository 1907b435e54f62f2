"""What a weights file holds, stored inside it, and checked when it is loaded.

Keras ``*.weights.h5`` files are HDF5; their root gets one attribute, ``abs_tf_identity``, a
JSON object such as ``{"model": "binary_cnn", "architecture": "abs_cnn"}`` or
``{"model": "abs_vae", "architecture": "class_vae", "class_id": 3}``. Because the identity
travels inside the file, a file copied or renamed into the wrong place (``vae_4`` over
``vae_3``, ``binary_cnn`` weights into ``weights/cnn``) is refused at load time, naming both
what was expected and what the file holds. Files written before identities existed carry none;
loading them raises unless the caller allows it explicitly.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

ATTRIBUTE = "abs_tf_identity"


class WeightsIdentityError(ValueError):
    """A weights file is not what the loader expects (or says nothing about what it is)."""


def identity(model: str, architecture: str, class_id: Optional[int] = None) -> dict:
    record = {"model": str(model), "architecture": str(architecture)}
    if class_id is not None:
        record["class_id"] = int(class_id)
    return record


def stamp(path, model: str, architecture: str, class_id: Optional[int] = None) -> None:
    """Writes the identity into an existing ``.weights.h5`` file (in place)."""
    import h5py

    with h5py.File(Path(path), "r+") as f:
        f.attrs[ATTRIBUTE] = json.dumps(identity(model, architecture, class_id), sort_keys=True)


def read(path) -> Optional[dict]:
    """The identity stored in ``path``, or None if it has none. Raises `WeightsIdentityError`
    if the file is not readable HDF5."""
    import h5py

    path = Path(path)
    try:
        with h5py.File(path, "r") as f:
            raw = f.attrs.get(ATTRIBUTE)
    except OSError as e:
        raise WeightsIdentityError(f"{path}: not a readable weights file ({e})") from e
    if raw is None:
        return None
    return json.loads(raw.decode() if isinstance(raw, bytes) else raw)


def check(path, model: str, architecture: str, class_id: Optional[int] = None,
          allow_missing: bool = False) -> None:
    """Raises `WeightsIdentityError` unless ``path`` holds the weights of (model, architecture,
    class_id). ``allow_missing`` accepts files that carry no identity at all."""
    expected = identity(model, architecture, class_id)
    found = read(path)
    if found is None:
        if allow_missing:
            return
        raise WeightsIdentityError(
            f"{path} carries no abs-tf identity (expected {expected}); it was not written by this version "
            f"of abs-tf. If you are sure what it holds, stamp it with "
            f"abs_tf.models.weights_identity.stamp(path, **{expected})")
    if found != expected:
        raise WeightsIdentityError(f"{path} holds the weights of {found}, but {expected} was expected "
                                   f"(a file copied or renamed into the wrong place?)")
