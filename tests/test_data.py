"""MNIST loading (abs_tf/data.py) and the shared input checks (abs_tf/checks.py)."""

from __future__ import annotations

import gzip
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from abs_tf import checks, data
from abs_tf.data import MnistDataError

TEST_IMAGES, TEST_LABELS = "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"
# Per-class counts of the original MNIST release.
TEST_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
TRAIN_COUNTS = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]


# --------------------------------------------------------------------------- helpers

def idx_bytes(array: np.ndarray, magic: int) -> bytes:
    """An IDX (unsigned byte) file's content for ``array``."""
    array = np.asarray(array, np.uint8)
    header = magic.to_bytes(4, "big") + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    return header + array.tobytes()


def synthetic(n=5, seed=0):
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (n, 28, 28), dtype=np.uint8), rng.integers(0, 10, n, dtype=np.uint8)


def write_split(directory, images_u8, labels_u8, *, gz=True, image_raw=None, label_raw=None):
    """Writes the two test-split files into ``directory`` (optionally with given raw contents)."""
    directory.mkdir(parents=True, exist_ok=True)
    image_raw = idx_bytes(images_u8, 2051) if image_raw is None else image_raw
    label_raw = idx_bytes(labels_u8, 2049) if label_raw is None else label_raw
    paths = {}
    for name, raw in ((TEST_IMAGES, image_raw), (TEST_LABELS, label_raw)):
        path = directory / (name + (".gz" if gz else ""))
        path.write_bytes(gzip.compress(raw) if gz else raw)
        paths[name] = path
    return paths


# --------------------------------------------------------------------------- good paths

def test_real_test_split(mnist_dir):
    images, labels = data.load_mnist("test", mnist_dir)
    assert images.shape == (10000, 28, 28, 1) and images.dtype == np.float32
    assert labels.shape == (10000,) and labels.dtype == np.int64
    assert images.min() == 0.0 and images.max() == 1.0
    assert labels[0] == 7 and labels[1] == 2 and labels[2] == 1
    np.testing.assert_array_equal(np.bincount(labels, minlength=10), TEST_COUNTS)
    # pixel / 255, nothing else: every value is a multiple of 1/255
    np.testing.assert_allclose(np.round(images[:50] * 255) / 255, images[:50], atol=0)


def test_real_train_split(mnist_train):
    images, labels = mnist_train
    assert images.shape == (60000, 28, 28, 1) and images.dtype == np.float32
    assert labels.shape == (60000,) and labels.dtype == np.int64
    assert 0.0 <= images.min() and images.max() <= 1.0
    assert labels[0] == 5 and labels[1] == 0 and labels[2] == 4
    counts = np.bincount(labels, minlength=10)
    np.testing.assert_array_equal(counts, TRAIN_COUNTS)
    assert counts.sum() == 60000


def test_raw_uncompressed_copies(mnist_dir, tmp_path):
    for name in (TEST_IMAGES, TEST_LABELS):
        with gzip.open(mnist_dir / (name + ".gz"), "rb") as f:
            (tmp_path / name).write_bytes(f.read())
    images, labels = data.load_mnist("test", tmp_path)
    ref_images, ref_labels = data.load_mnist("test", mnist_dir)
    np.testing.assert_array_equal(images, ref_images)
    np.testing.assert_array_equal(labels, ref_labels)


def test_data_dir_argument_beats_env(mnist_dir, tmp_path, monkeypatch):
    monkeypatch.setenv(data.DATA_DIR_ENV, str(tmp_path / "nowhere"))
    images, labels = data.load_mnist("test", mnist_dir)
    assert images.shape == (10000, 28, 28, 1) and labels[0] == 7


def test_env_var_used_without_argument(mnist_dir, tmp_path, monkeypatch):
    missing = tmp_path / "env_dir_missing"
    monkeypatch.setenv(data.DATA_DIR_ENV, str(missing))
    with pytest.raises(MnistDataError, match=re.escape(str(missing))):
        data.load_mnist("test")
    # and an env dir holding (modified) files is the one that is read
    images_u8, labels_u8 = synthetic()
    write_split(tmp_path / "env_dir", images_u8, labels_u8)
    monkeypatch.setenv(data.DATA_DIR_ENV, str(tmp_path / "env_dir"))
    images, labels = data.load_mnist("test", verify_checksums=False)
    np.testing.assert_array_equal(labels, labels_u8)
    np.testing.assert_allclose(images[..., 0], images_u8 / 255.0, rtol=1e-7)
    assert data.resolve_data_dir() == tmp_path / "env_dir"


def test_bad_split_name(mnist_dir):
    with pytest.raises(ValueError, match="split"):
        data.load_mnist("validation", mnist_dir)


# --------------------------------------------------------------------------- bad paths

def test_missing_directory(tmp_path):
    with pytest.raises(MnistDataError, match=r"directory .*does_not_exist.* does not exist"):
        data.load_mnist("test", tmp_path / "does_not_exist")


def test_data_dir_that_is_a_file_says_so(tmp_path):
    path = tmp_path / "mnist.tar"
    path.write_bytes(b"x")
    with pytest.raises(MnistDataError, match=rf"{re.escape(str(path))} is a file, not a directory") as error:
        data.load_mnist("test", path)
    assert data.DATA_DIR_ENV not in str(error.value)     # it did not come from the variable


@pytest.mark.parametrize("kind", ["missing", "file"])
def test_data_dir_from_env_names_the_variable_and_its_value(tmp_path, monkeypatch, kind):
    path = tmp_path / "mnist"
    if kind == "file":
        path.write_bytes(b"x")
    monkeypatch.setenv(data.DATA_DIR_ENV, str(path))
    problem = "is a file, not a directory" if kind == "file" else "does not exist"
    with pytest.raises(MnistDataError, match=re.escape(f"(from ${data.DATA_DIR_ENV}={str(path)!r}) {problem}")):
        data.load_mnist("test")


@pytest.mark.parametrize("value", ["", "   "], ids=["empty", "blank"])
def test_blank_env_counts_as_unset(monkeypatch, value):
    monkeypatch.setenv(data.DATA_DIR_ENV, value)
    assert data.resolve_data_dir() is None
    assert data.resolve_data_dir("given") == Path("given")


def test_missing_file(tmp_path):
    images_u8, labels_u8 = synthetic()
    paths = write_split(tmp_path, images_u8, labels_u8)
    paths[TEST_LABELS].unlink()
    with pytest.raises(MnistDataError, match=rf"{TEST_LABELS}\(\.gz\) not found in {re.escape(str(tmp_path))}"):
        data.load_mnist("test", tmp_path, verify_checksums=False)


@pytest.mark.parametrize("gz", [True, False])
def test_truncated_header(tmp_path, gz):
    images_u8, labels_u8 = synthetic()
    write_split(tmp_path, images_u8, labels_u8, gz=gz, image_raw=idx_bytes(images_u8, 2051)[:10])
    with pytest.raises(MnistDataError, match=rf"{TEST_IMAGES}.*truncated header \(10 bytes, need 16\)"):
        data.load_mnist("test", tmp_path, verify_checksums=False)


@pytest.mark.parametrize("gz", [True, False])
def test_truncated_data(tmp_path, gz):
    images_u8, labels_u8 = synthetic()
    write_split(tmp_path, images_u8, labels_u8, gz=gz, image_raw=idx_bytes(images_u8, 2051)[:-100])
    with pytest.raises(MnistDataError, match=rf"{TEST_IMAGES}.*truncated: header says 3920 bytes"):
        data.load_mnist("test", tmp_path, verify_checksums=False)


def test_trailing_data(tmp_path):
    images_u8, labels_u8 = synthetic()
    write_split(tmp_path, images_u8, labels_u8, label_raw=idx_bytes(labels_u8, 2049) + b"\0")
    with pytest.raises(MnistDataError, match=rf"{TEST_LABELS}.*trailing data"):
        data.load_mnist("test", tmp_path, verify_checksums=False)


def test_truncated_gzip_stream(tmp_path):
    images_u8, labels_u8 = synthetic()
    paths = write_split(tmp_path, images_u8, labels_u8)
    compressed = paths[TEST_IMAGES].read_bytes()
    paths[TEST_IMAGES].write_bytes(compressed[: len(compressed) // 2])
    with pytest.raises(MnistDataError, match=rf"{TEST_IMAGES}\.gz: cannot read"):
        data.load_mnist("test", tmp_path, verify_checksums=False)


def test_corrupt_gzip(tmp_path):
    images_u8, labels_u8 = synthetic()
    paths = write_split(tmp_path, images_u8, labels_u8)
    paths[TEST_LABELS].write_bytes(b"this is not gzip data at all" * 4)
    with pytest.raises(MnistDataError, match=rf"{TEST_LABELS}\.gz: cannot read \(BadGzipFile"):
        data.load_mnist("test", tmp_path, verify_checksums=False)


@pytest.mark.parametrize("which, magic, expected", [(TEST_IMAGES, 2049, "0x00000803"),
                                                    (TEST_LABELS, 0xDEADBEEF, "0x00000801")])
def test_wrong_magic(tmp_path, which, magic, expected):
    images_u8, labels_u8 = synthetic()
    raws = {TEST_IMAGES: idx_bytes(images_u8, 2051), TEST_LABELS: idx_bytes(labels_u8, 2049)}
    raws[which] = magic.to_bytes(4, "big") + raws[which][4:]
    write_split(tmp_path, images_u8, labels_u8, image_raw=raws[TEST_IMAGES], label_raw=raws[TEST_LABELS])
    with pytest.raises(MnistDataError, match=rf"{which}.*wrong magic number {magic:#010x}, expected {expected}"):
        data.load_mnist("test", tmp_path, verify_checksums=False)


def test_wrong_dimensions(tmp_path):
    _, labels_u8 = synthetic()
    images_u8 = np.zeros((5, 28, 27), np.uint8)
    write_split(tmp_path, images_u8, labels_u8)
    with pytest.raises(MnistDataError, match=rf"{TEST_IMAGES}.*wrong dimensions \(28, 27\), expected \(28, 28\)"):
        data.load_mnist("test", tmp_path, verify_checksums=False)


def test_checksum_checked_by_default(tmp_path):
    images_u8, labels_u8 = synthetic()
    write_split(tmp_path, images_u8, labels_u8)
    with pytest.raises(MnistDataError, match=rf"{TEST_IMAGES}.*SHA-256 .*verify_checksums=False"):
        data.load_mnist("test", tmp_path)


def test_modified_real_file_checksum_and_opt_out(mnist_dir, tmp_path):
    with gzip.open(mnist_dir / (TEST_IMAGES + ".gz"), "rb") as f:
        raw = bytearray(f.read())
    raw[16 + 0] = 200  # first pixel of test image 0 (a blank corner, 0 in the original)
    (tmp_path / TEST_IMAGES).write_bytes(bytes(raw))
    shutil.copy(mnist_dir / (TEST_LABELS + ".gz"), tmp_path / (TEST_LABELS + ".gz"))
    with pytest.raises(MnistDataError, match=rf"{TEST_IMAGES}: SHA-256"):
        data.load_mnist("test", tmp_path)
    images, labels = data.load_mnist("test", tmp_path, verify_checksums=False)
    assert images.shape == (10000, 28, 28, 1) and labels[0] == 7
    assert images[0, 0, 0, 0] == np.float32(200 / 255)


def test_synthetic_files_load_with_opt_out(tmp_path):
    images_u8, labels_u8 = synthetic(n=5)
    write_split(tmp_path, images_u8, labels_u8, gz=False)
    images, labels = data.load_mnist("test", tmp_path, verify_checksums=False)
    assert images.shape == (5, 28, 28, 1) and images.dtype == np.float32
    np.testing.assert_array_equal(images[..., 0], (images_u8 / np.float32(255)).astype(np.float32))
    assert labels.dtype == np.int64
    np.testing.assert_array_equal(labels, labels_u8)


def test_count_mismatch(tmp_path):
    images_u8, labels_u8 = synthetic(n=5)
    write_split(tmp_path, images_u8, labels_u8[:4])
    with pytest.raises(MnistDataError, match=rf"5 images in {TEST_IMAGES} but 4 labels in {TEST_LABELS}"):
        data.load_mnist("test", tmp_path, verify_checksums=False)


def test_label_out_of_range(tmp_path):
    images_u8, labels_u8 = synthetic(n=5)
    labels_u8 = labels_u8.copy()
    labels_u8[3] = 11
    write_split(tmp_path, images_u8, labels_u8)
    with pytest.raises(MnistDataError, match=rf"{TEST_LABELS}: label 11 at index 3 is outside 0\.\.9"):
        data.load_mnist("test", tmp_path, verify_checksums=False)


def test_parse_idx_direct():
    images_u8, _ = synthetic(n=3)
    out = data.parse_idx(idx_bytes(images_u8, 2051), expected_magic=2051, path="x", expected_dims=(28, 28))
    assert out.dtype == np.uint8
    np.testing.assert_array_equal(out, images_u8)


# --------------------------------------------------------------------------- checks.check_images

def _run(fn, images, in_graph):
    if not in_graph:
        return fn(images)
    spec = tf.TensorSpec([None, 28, 28, 1], tf.float32)
    return tf.function(fn, input_signature=[spec])(tf.constant(images, tf.float32))


def test_check_images_passes_valid_and_casts():
    x = np.random.default_rng(0).uniform(size=(3, 28, 28, 1))  # float64
    out = checks.check_images(x)
    assert out.dtype == tf.float32
    np.testing.assert_allclose(out.numpy(), x.astype(np.float32))
    edges = np.zeros((2, 28, 28, 1), np.float32)
    edges[1] = 1.0
    np.testing.assert_array_equal(checks.check_images(edges).numpy(), edges)
    assert checks.check_images(np.zeros((0, 28, 28, 1), np.float32)).shape == (0, 28, 28, 1)
    assert checks.check_images(np.zeros((1, 28, 28, 1), np.float16)).dtype == tf.float32


@pytest.mark.parametrize("shape", [(28, 28, 1), (1, 28, 28), (2, 1, 28, 28, 1)])
def test_check_images_wrong_rank(shape):
    with pytest.raises(ValueError, match="rank"):
        checks.check_images(np.zeros(shape, np.float32))


@pytest.mark.parametrize("shape", [(2, 28, 28, 3), (2, 1, 28, 28), (2, 32, 32, 1)])
def test_check_images_wrong_shape(shape):
    with pytest.raises(ValueError, match=r"\[B, 28, 28, 1\]"):
        checks.check_images(np.zeros(shape, np.float32))


def test_check_images_wrong_shape_in_graph():
    fn = tf.function(checks.check_images, input_signature=[tf.TensorSpec([None, 28, 28, 3], tf.float32)])
    with pytest.raises(ValueError, match=r"images must have shape \[B, 28, 28, 1\], got \[None, 28, 28, 3\]"):
        fn.get_concrete_function()


@pytest.mark.parametrize("shape", [(2, 28, 28, 4), (2, 1, 28, 28), (3, 32, 32, 1), (28, 28, 1), (1, 2, 28, 28, 1)])
def test_check_images_shape_checked_at_run_time_with_unknown_dims(shape):
    """Traced with unknown dimensions (as an exported signature may be), the shape is checked
    when the graph runs, with the shape it got in the message."""
    fn = tf.function(checks.check_images, input_signature=[tf.TensorSpec(None, tf.float32)])
    got = "[" + ", ".join(map(str, shape)) + "]"
    with pytest.raises(tf.errors.InvalidArgumentError,
                       match=re.escape(f"images must have shape [B, 28, 28, 1], got {got}")):
        fn(tf.zeros(shape))
    # the checked tensor has the static shape the models rely on
    assert fn.get_concrete_function().structured_outputs.shape.as_list() == [None, 28, 28, 1]
    assert fn(tf.zeros((0, 28, 28, 1))).shape == (0, 28, 28, 1)


def test_check_images_names_a_channels_first_batch():
    with pytest.raises(ValueError, match=r"got \[2, 1, 28, 28\] \(channels first\? abs-tf images are NHWC\)"):
        checks.check_images(np.zeros((2, 1, 28, 28), np.float32))


@pytest.mark.parametrize("dtype", [np.uint8, np.int32, np.int64, bool])
def test_check_images_integer_dtype(dtype):
    with pytest.raises(TypeError, match="floating"):
        checks.check_images(np.zeros((1, 28, 28, 1), dtype))
    with pytest.raises(TypeError):
        checks.check_images(tf.zeros((1, 28, 28, 1), tf.as_dtype(dtype)))


def test_check_images_uint8_hint():
    with pytest.raises(TypeError, match="255"):
        checks.check_images(np.zeros((1, 28, 28, 1), np.uint8))


@pytest.mark.parametrize("in_graph", [False, True], ids=["eager", "tf.function"])
@pytest.mark.parametrize("value, message", [(np.nan, "NaN or Inf"), (np.inf, "NaN or Inf"),
                                            (-np.inf, "NaN or Inf"), (-0.01, "pixels < 0"),
                                            (1.01, "pixels > 1")])
def test_check_images_bad_values(value, message, in_graph):
    x = np.full((2, 28, 28, 1), 0.5, np.float32)
    x[1, 3, 4, 0] = value
    with pytest.raises(tf.errors.InvalidArgumentError, match=message):
        out = _run(checks.check_images, x, in_graph)
        out.numpy()


@pytest.mark.parametrize("in_graph", [False, True], ids=["eager", "tf.function"])
def test_check_images_valid_in_graph_and_empty(in_graph):
    x = np.full((2, 28, 28, 1), 0.25, np.float32)
    np.testing.assert_array_equal(_run(checks.check_images, x, in_graph).numpy(), x)
    empty = np.zeros((0, 28, 28, 1), np.float32)
    assert _run(checks.check_images, empty, in_graph).shape[0] == 0
