"""MNIST loading from the original IDX files, verified.

`load_mnist(split)` returns ``(images, labels)``: images float32 ``[N, 28, 28, 1]`` in
``[0, 1]`` (uint8 / 255, no normalisation), labels int64 ``[N]`` in ``0..9``.

Where the data comes from, in order: the ``data_dir`` argument, the environment variable
``ABS_TF_DATA_DIR``, else ``keras.datasets.mnist.load_data()`` (downloads once into the
Keras cache). A directory must hold the four original IDX files, gzip-compressed
(``*.gz``) or raw. Every file is checked: magic number, dimensions, item count, label
range and the SHA-256 of the uncompressed content against the original release's.
"""

from __future__ import annotations

import gzip
import hashlib
import os
from pathlib import Path

import numpy as np

DATA_DIR_ENV = "ABS_TF_DATA_DIR"

SPLITS = ("train", "test")
_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
_COUNTS = {"train": 60000, "test": 10000}

# SHA-256 of the *uncompressed* original IDX files (Y. LeCun's release).
SHA256 = {
    "t10k-images-idx3-ubyte": "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
    "t10k-labels-idx1-ubyte": "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
    "train-images-idx3-ubyte": "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
    "train-labels-idx1-ubyte": "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
}

IMAGE_MAGIC = 2051  # 0x00000803: unsigned byte, 3 dimensions
LABEL_MAGIC = 2049  # 0x00000801: unsigned byte, 1 dimension


class MnistDataError(ValueError):
    """A data file is missing, truncated, corrupt or not the expected MNIST file."""


def _find_file(data_dir: Path, name: str) -> Path:
    for candidate in (data_dir / (name + ".gz"), data_dir / name):
        if candidate.is_file():
            return candidate
    raise MnistDataError(
        f"MNIST file {name}(.gz) not found in {data_dir}; expected the four original IDX "
        f"files ({', '.join(sorted(SHA256))}), gzip or raw")


def _read_bytes(path: Path) -> bytes:
    try:
        if path.suffix == ".gz":
            with gzip.open(path, "rb") as f:
                return f.read()
        return path.read_bytes()
    except (OSError, EOFError, gzip.BadGzipFile) as e:  # truncated/corrupt gzip streams
        raise MnistDataError(f"{path}: cannot read ({type(e).__name__}: {e})") from e


def parse_idx(raw: bytes, *, expected_magic: int, path: str, expected_dims=None) -> np.ndarray:
    """Parses one IDX (unsigned byte) file's content into a uint8 array, checking its header.

    Args:
      raw: the uncompressed file content.
      expected_magic: 2051 for images, 2049 for labels.
      path: the file name, used in error messages.
      expected_dims: optional tuple of the dimensions after the count (e.g. (28, 28)).
    """
    ndim = (expected_magic & 0xFF)
    header = 4 + 4 * ndim
    magic = int.from_bytes(raw[:4], "big") if len(raw) >= 4 else None
    if len(raw) < 4 or (magic == expected_magic and len(raw) < header):
        raise MnistDataError(f"{path}: truncated header ({len(raw)} bytes, need {header})")
    if magic != expected_magic:
        raise MnistDataError(
            f"{path}: wrong magic number {magic:#010x}, expected {expected_magic:#010x} "
            f"({'images' if expected_magic == IMAGE_MAGIC else 'labels'} IDX file)")
    dims = tuple(int.from_bytes(raw[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim))
    if expected_dims is not None and dims[1:] != tuple(expected_dims):
        raise MnistDataError(f"{path}: wrong dimensions {dims[1:]}, expected {tuple(expected_dims)}")
    size = int(np.prod(dims))
    if len(raw) != header + size:
        raise MnistDataError(
            f"{path}: {'truncated' if len(raw) < header + size else 'trailing data'}: "
            f"header says {size} bytes of data for shape {dims}, file has {len(raw) - header}")
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(dims)


def _load_idx_dir(split: str, data_dir: Path, verify_checksums: bool):
    image_name, label_name = _FILES[split]
    arrays = {}
    for name, magic, dims in ((image_name, IMAGE_MAGIC, (28, 28)), (label_name, LABEL_MAGIC, ())):
        path = _find_file(data_dir, name)
        raw = _read_bytes(path)
        arrays[name] = parse_idx(raw, expected_magic=magic, path=str(path), expected_dims=dims)
        if verify_checksums:
            digest = hashlib.sha256(raw).hexdigest()
            if digest != SHA256[name]:
                raise MnistDataError(
                    f"{path}: SHA-256 of the uncompressed content is {digest}, expected "
                    f"{SHA256[name]} (the original MNIST file). Pass verify_checksums=False "
                    f"to load modified data on purpose.")
    images, labels = arrays[image_name], arrays[label_name]
    if len(images) != len(labels):
        raise MnistDataError(
            f"{data_dir}: {len(images)} images in {image_name} but {len(labels)} labels in {label_name}")
    if verify_checksums and len(images) != _COUNTS[split]:
        raise MnistDataError(f"{data_dir}: {len(images)} {split} images, expected {_COUNTS[split]}")
    return images, labels


def _load_keras(split: str):
    import keras  # deferred: the common case (a data directory) does not need it

    (x_train, y_train), (x_test, y_test) = keras.datasets.mnist.load_data()
    return (x_train, y_train) if split == "train" else (x_test, y_test)


def _data_dir_and_origin(data_dir=None):
    """(directory or None, where it came from for error messages)."""
    if data_dir:
        return Path(data_dir), "the data_dir argument"
    env = os.environ.get(DATA_DIR_ENV, "")
    if env.strip():
        return Path(env), f"${DATA_DIR_ENV}={env!r}"
    return None, "the Keras download"


def resolve_data_dir(data_dir=None):
    """The data directory in effect: the argument, else $ABS_TF_DATA_DIR (unless empty or blank),
    else None (Keras)."""
    return _data_dir_and_origin(data_dir)[0]


def _check_directory(directory: Path, origin: str):
    from_env = origin.startswith("$")
    where = f" (from {origin})" if from_env else ""
    hint = f"; set ${DATA_DIR_ENV} to a directory of the four MNIST IDX files, or unset it" if from_env else ""
    if directory.is_file():
        raise MnistDataError(f"MNIST data directory {directory}{where} is a file, not a directory{hint}")
    if not directory.is_dir():
        raise MnistDataError(f"MNIST data directory {directory}{where} does not exist{hint}")


def load_mnist(split: str, data_dir=None, *, verify_checksums: bool = True):
    """Loads an MNIST split.

    Args:
      split: "train" (60000 images) or "test" (10000 images).
      data_dir: a directory of the original IDX files (gz or raw). Default: $ABS_TF_DATA_DIR
        (an empty or blank value counts as unset), else the standard Keras download/cache.
      verify_checksums: check the SHA-256 of each file (and the split's image count). Turn
        off only to load deliberately modified IDX files.

    Returns:
      images: float32 [N, 28, 28, 1] in [0, 1] (pixel / 255).
      labels: int64 [N] in 0..9.

    Raises:
      MnistDataError: the directory does not exist or is a file, a file is missing,
        truncated, has a wrong header, count or checksum, or holds labels outside 0..9. The
        message names the file and the problem (and $ABS_TF_DATA_DIR when the directory came
        from it).
    """
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    directory, origin = _data_dir_and_origin(data_dir)
    if directory is not None:
        _check_directory(directory, origin)
        images_u8, labels_u8 = _load_idx_dir(split, directory, verify_checksums)
        source = str(directory / _FILES[split][1])
    else:
        images_u8, labels_u8 = _load_keras(split)
        source = "keras.datasets.mnist"
    labels = np.asarray(labels_u8, dtype=np.int64)
    if labels.size and (labels.min() < 0 or labels.max() > 9):
        bad = int(np.flatnonzero((labels < 0) | (labels > 9))[0])
        raise MnistDataError(f"{source}: label {labels[bad]} at index {bad} is outside 0..9")
    images = (np.asarray(images_u8, dtype=np.float32) / 255.0)[..., None]
    return images, labels
