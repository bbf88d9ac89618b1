"""numpy_dl.data.datasets: the built-in digits, IDX, .npz/.npy, synthetic images, specs."""
import gzip
import time

import numpy as np
import pytest

from numpy_dl.data import datasets, mapped
from numpy_dl.data.datasets import DatasetError

TRAIN_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte")
TEST_FILES = ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")


def check_contract(data, count, shape):
    images, labels = data
    assert images.dtype == np.float32 and images.shape == (count, *shape)
    assert 0 <= images.min() and images.max() <= 1
    if labels is not None:
        assert labels.dtype == np.int64 and labels.shape == (count,)


# ---------------------------------------------------------------- digits

def test_digits_are_the_shipped_uci_set():
    images, labels = datasets.load_digits()
    check_contract((images, labels), 1797, (1, 8, 8))
    assert images.max() == 1 and images.min() == 0
    assert np.array_equal(np.unique(labels), np.arange(10))
    assert np.bincount(labels).min() >= 170  # roughly balanced, as the UCI set is
    # multiples of 1/16: the original block counts survive the conversion exactly
    assert np.array_equal(images * 16, np.round(images * 16))


def test_digits_ship_with_their_attribution():
    from importlib import resources
    text = resources.files("numpy_dl.data").joinpath("DIGITS.md").read_text()
    assert "Alpaydin" in text and "CC BY 4.0" in text


def test_mnist_5k_is_the_shipped_28x28_subset():
    images, labels = datasets.load("mnist-5k")
    check_contract((images, labels), 5000, (1, 28, 28))
    assert images.min() == 0 and images.max() == 1
    assert np.array_equal(np.bincount(labels), [500] * 10)
    assert np.array_equal(images * 255, np.round(images * 255))  # uint8 pixels, exactly
    ink = images.reshape(5000, -1).mean(axis=1)
    assert 0.05 < ink.mean() < 0.25 and ink.min() > 0  # real digits: some ink, mostly paper
    from importlib import resources
    text = resources.files("numpy_dl.data").joinpath("MNIST_5K.md").read_text()
    assert "LeCun" in text and "CC BY-SA 3.0" in text


# ---------------------------------------------------------------- MNIST IDX files

def idx_bytes(array, magic):
    array = np.asarray(array, np.uint8)
    header = np.array([magic, *array.shape], ">u4").tobytes()
    return header + array.tobytes()


def write(path, data, gz):
    if gz:
        with gzip.open(str(path) + ".gz", "wb") as stream:
            stream.write(data)
    else:
        path.write_bytes(data)


def write_mnist(directory, names=TRAIN_FILES, count=5, gz=False, seed=0):
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, (count, 28, 28), dtype=np.uint8)
    labels = rng.integers(0, 10, count, dtype=np.uint8)
    write(directory / names[0], idx_bytes(images, 0x803), gz)
    write(directory / names[1], idx_bytes(labels, 0x801), gz)
    return images, labels


@pytest.mark.parametrize("gz", [False, True])
@pytest.mark.parametrize("loader", [datasets.load_mnist, datasets.load_fashion_mnist])
def test_idx_files_plain_and_gzipped(tmp_path, gz, loader):
    images, labels = write_mnist(tmp_path, count=5, gz=gz)
    test_images, test_labels = write_mnist(tmp_path, TEST_FILES, count=3, gz=gz, seed=1)
    data = loader(tmp_path)
    check_contract(data, 5, (1, 28, 28))
    np.testing.assert_allclose(data.images[:, 0] * 255, images, atol=1e-4)
    assert np.array_equal(data.labels, labels)
    test = loader(str(tmp_path), train=False)
    check_contract(test, 3, (1, 28, 28))
    assert np.array_equal(test.labels, test_labels)


def test_missing_idx_files_name_the_directory_and_the_files(tmp_path):
    with pytest.raises(DatasetError) as error:
        datasets.load_mnist(tmp_path)
    message = str(error.value)
    assert str(tmp_path) in message and all(name in message for name in TRAIN_FILES)
    assert ".gz" in message
    write_mnist(tmp_path)  # the train pair alone does not satisfy train=False
    with pytest.raises(DatasetError, match="t10k-images-idx3-ubyte"):
        datasets.load_fashion_mnist(tmp_path, train=False)
    with pytest.raises(DatasetError, match="does not exist"):
        datasets.load_mnist(tmp_path / "nowhere")


def test_only_one_idx_file_missing_is_named(tmp_path):
    write_mnist(tmp_path)
    (tmp_path / TRAIN_FILES[1]).unlink()
    with pytest.raises(DatasetError, match=f"has no {TRAIN_FILES[1]};"):
        datasets.load_mnist(tmp_path)


@pytest.mark.parametrize("corrupt, problem", [
    (lambda good: good[:6], "shorter than the 16-byte header"),
    (lambda good: b"\x00\x00\x08\x01" + good[4:], "magic number is 0x00000801"),
    (lambda good: good[:-1], "follow it"),
    (lambda good: good + b"\x00", "follow it"),
])
def test_malformed_image_file_says_what_is_wrong(tmp_path, corrupt, problem):
    write_mnist(tmp_path)
    path = tmp_path / TRAIN_FILES[0]
    path.write_bytes(corrupt(path.read_bytes()))
    with pytest.raises(DatasetError, match=problem) as error:
        datasets.load_mnist(tmp_path)
    assert str(path) in str(error.value) and TRAIN_FILES[1] in str(error.value)


def test_swapped_and_mismatched_idx_files(tmp_path):
    images, labels = write_mnist(tmp_path, count=4)
    (tmp_path / TRAIN_FILES[1]).write_bytes(idx_bytes(images, 0x803))
    with pytest.raises(DatasetError, match="magic number is 0x00000803, not 0x00000801"):
        datasets.load_mnist(tmp_path)
    (tmp_path / TRAIN_FILES[1]).write_bytes(idx_bytes(labels[:3], 0x801))
    with pytest.raises(DatasetError, match="4 images but 3 labels"):
        datasets.load_mnist(tmp_path)


def test_truncated_gzip_is_reported_as_malformed(tmp_path):
    write_mnist(tmp_path, gz=True)
    path = tmp_path / (TRAIN_FILES[0] + ".gz")
    path.write_bytes(path.read_bytes()[:40])
    with pytest.raises(DatasetError, match="not a complete gzip file"):
        datasets.load_mnist(tmp_path)


# ---------------------------------------------------------------- .npz / .npy files

def test_npy_holds_images_alone(tmp_path):
    pixels = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4) * 10
    np.save(tmp_path / "x.npy", pixels)
    data = datasets.load_array_file(tmp_path / "x.npy")
    check_contract(data, 2, (1, 3, 4))
    assert data.labels is None
    np.testing.assert_allclose(data.images[:, 0], pixels / 255, rtol=1e-6)


@pytest.mark.parametrize("image_key, label_key", [("images", "labels"), ("x", "y")])
def test_npz_keys_and_labels(tmp_path, image_key, label_key):
    pixels = np.random.default_rng(0).random((6, 3, 5, 5), dtype=np.float32)
    np.savez(tmp_path / "d.npz", **{image_key: pixels, label_key: np.arange(6, dtype=np.int32)})
    data = datasets.load_array_file(str(tmp_path / "d.npz"))
    check_contract(data, 6, (3, 5, 5))
    assert np.array_equal(data.images, pixels)
    assert np.array_equal(data.labels, np.arange(6))


def test_flat_rows_become_square_images_and_masks_stay(tmp_path):
    np.savez(tmp_path / "flat.npz", x=np.ones((4, 16), np.int64))
    data = datasets.load_array_file(tmp_path / "flat.npz")
    check_contract(data, 4, (1, 4, 4))
    assert data.images.max() == 1  # integer 0/1 data is not divided by 255


@pytest.mark.parametrize("arrays, problem", [
    ({"pixels": np.zeros((2, 4, 4))}, "no 'images' or 'x' array .*pixels"),
    ({"x": np.zeros((2, 15))}, "15 values, not a square number"),
    ({"x": np.zeros((2, 1, 2, 2, 2))}, r"shape \(2, 1, 2, 2, 2\)"),
    ({"x": np.zeros((0, 4, 4))}, "empty array"),
    ({"x": np.full((2, 4, 4), 1.5)}, r"float pixels .*expected values in \[0, 1\]"),
    ({"x": np.full((2, 4, 4), np.nan)}, r"expected values in \[0, 1\]"),
    ({"x": np.full((2, 4, 4), 300)}, r"expected 0\.\.255"),
    ({"x": np.full((2, 4, 4), -1)}, r"expected 0\.\.255"),
    ({"x": np.zeros((2, 4, 4)), "y": np.zeros(3, np.int64)}, r"expected \(2,\), one per"),
    ({"x": np.zeros((2, 4, 4)), "y": np.zeros(2)}, "expected integer classes"),
    ({"x": np.zeros((2, 4, 4)), "y": np.array([0, -1])}, "negative labels"),
])
def test_npz_errors_say_what_is_wrong(tmp_path, arrays, problem):
    np.savez(tmp_path / "bad.npz", **arrays)
    with pytest.raises(DatasetError, match=problem):
        datasets.load_array_file(tmp_path / "bad.npz")


def test_unreadable_array_files(tmp_path):
    with pytest.raises(DatasetError, match="does not exist"):
        datasets.load_array_file(tmp_path / "missing.npz")
    (tmp_path / "text.npy").write_text("not numpy")
    with pytest.raises(DatasetError, match="could not be read"):
        datasets.load_array_file(tmp_path / "text.npy")
    np.save(tmp_path / "objects.npy", np.array([{"a": 1}], dtype=object))
    with pytest.raises(DatasetError, match="without pickle"):
        datasets.load_array_file(tmp_path / "objects.npy")
    np.savez(tmp_path / "cut.npz", x=np.zeros((8, 4, 4)))
    (tmp_path / "cut.npz").write_bytes((tmp_path / "cut.npz").read_bytes()[:100])
    with pytest.raises(DatasetError, match="could not be read"):
        datasets.load_array_file(tmp_path / "cut.npz")


# ---------------------------------------------------------------- synthetic images

@pytest.mark.parametrize("size", [8, 13, 28, 32])
def test_synthetic_shapes_and_range(size):
    data = datasets.synthetic_images(40, image_size=size)
    check_contract(data, 40, (1, size, size))
    assert np.array_equal(np.bincount(data.labels), [10] * len(datasets.SYNTHETIC_SHAPES))
    assert (data.images.reshape(40, -1).max(axis=1) > 0.3).all()  # every image has a shape


def test_synthetic_is_deterministic_per_seed():
    first = datasets.synthetic_images(64, 16, channels=3, seed=7)
    again = datasets.synthetic_images(64, 16, channels=3, seed=7)
    other = datasets.synthetic_images(64, 16, channels=3, seed=8)
    check_contract(first, 64, (3, 16, 16))
    assert np.array_equal(first.images, again.images)
    assert np.array_equal(first.labels, again.labels)
    assert not np.array_equal(first.images, other.images)


def test_synthetic_classes_differ_on_average():
    images, labels = datasets.synthetic_images(400, 16, seed=1)
    means = np.stack([images[labels == k].mean(axis=0) for k in range(4)])
    distances = np.abs(means[:, None] - means[None]).sum(axis=(2, 3, 4))
    assert (distances[~np.eye(4, dtype=bool)] > 1).all()


def test_synthetic_scales_to_benchmark_sizes():
    # Vectorised rendering makes ten thousand 28x28 images a fraction of a second; a
    # per-pixel Python loop would take minutes and stall the suite here.
    start = time.perf_counter()
    data = datasets.synthetic_images(10_000, 28, seed=0)
    print(f"10,000 synthetic 28x28 images in {time.perf_counter() - start:.2f} s")
    check_contract(data, 10_000, (1, 28, 28))


@pytest.mark.parametrize("arguments", [dict(num_samples=0), dict(image_size=2.5),
                                       dict(channels=-1)])
def test_synthetic_rejects_bad_sizes(arguments):
    with pytest.raises(DatasetError, match="must be a positive integer"):
        datasets.synthetic_images(**arguments)


# ---------------------------------------------------------------- specs

def test_load_specs(tmp_path):
    assert datasets.load("digits").images.shape == (1797, 1, 8, 8)
    assert len(datasets.load("synthetic").images) == 1024
    assert datasets.load(" synthetic:50 ").images.shape == (50, 1, 28, 28)
    write_mnist(tmp_path, count=5)
    write_mnist(tmp_path, TEST_FILES, count=2, gz=True)
    assert len(datasets.load(f"mnist:{tmp_path}").images) == 5
    assert len(datasets.load(f"fashion-mnist:{tmp_path}", train=False).images) == 2
    np.save(tmp_path / "a.npy", np.zeros((3, 4, 4), np.float32))
    np.savez(tmp_path / "b.npz", images=np.zeros((2, 4, 4), np.float32))
    assert len(datasets.load(f"npz:{tmp_path / 'a.npy'}").images) == 3
    assert len(datasets.load(f"npz:{tmp_path / 'b.npz'}").images) == 2


@pytest.mark.parametrize("spec", ["cifar", "mnist", "mnist:", "npz:", "digits:8", ""])
def test_unknown_specs_list_the_accepted_forms(spec):
    with pytest.raises(DatasetError) as error:
        datasets.load(spec)
    message = str(error.value)
    assert all(form in message for form in ("digits", "mnist:DIR", "fashion-mnist:DIR",
                                            "npz:PATH", "synthetic:N"))


@pytest.mark.parametrize("spec", ["synthetic:0", "synthetic:ten", "synthetic:-5"])
def test_synthetic_spec_needs_a_positive_count(spec):
    with pytest.raises(DatasetError, match="positive integer count"):
        datasets.load(spec)


def test_loader_errors_pass_through_load(tmp_path):
    with pytest.raises(DatasetError, match="train-images-idx3-ubyte"):
        datasets.load(f"mnist:{tmp_path}")


# ---------------------------------------------------------------- train/val split

@pytest.mark.parametrize("n, fraction, val_count", [(1797, 0.1, 180), (10, 0.25, 2),
                                                    (5, 0.01, 1), (7, 0.0, 0), (1, 0.5, 0)])
def test_train_val_split_is_disjoint_and_covering(n, fraction, val_count):
    train, val = datasets.train_val_split(n, fraction, seed=3)
    assert len(val) == val_count
    assert np.array_equal(np.sort(np.concatenate([train, val])), np.arange(n))
    assert train.dtype.kind == val.dtype.kind == "i"


def test_train_val_split_is_deterministic_per_seed():
    first = datasets.train_val_split(100, 0.2, seed=0)
    again = datasets.train_val_split(100, 0.2, seed=0)
    other = datasets.train_val_split(100, 0.2, seed=1)
    assert all(np.array_equal(a, b) for a, b in zip(first, again))
    assert not np.array_equal(first[1], other[1])


@pytest.mark.parametrize("fraction", [1.0, -0.1])
def test_train_val_split_rejects_bad_fractions(fraction):
    with pytest.raises(DatasetError, match=r"val_fraction must lie in \[0, 1\)"):
        datasets.train_val_split(10, fraction)


# ---------------------------------------------------------------- memory-mapped files

@pytest.mark.parametrize("dtype, scale", [(np.uint8, 255), (np.float32, 1), (np.float64, 1)])
def test_mapped_npy_reads_the_samples_indexed_as_float32(tmp_path, dtype, scale):
    pixels = np.random.default_rng(0).integers(0, 256, (20, 6, 6))
    stored = (pixels if scale == 255 else pixels / 255).astype(dtype)
    np.save(tmp_path / "images.npy", stored)
    images, labels = datasets.load(f"npz:{tmp_path / 'images.npy'}", mapped=True)
    assert labels is None and images.shape == (20, 1, 6, 6) and len(images) == 20
    in_memory, _ = datasets.load(f"npz:{tmp_path / 'images.npy'}")
    assert isinstance(in_memory, np.ndarray) and not isinstance(in_memory, np.memmap)
    if dtype == np.float32:
        assert isinstance(images, np.memmap) and not images.flags.writeable
    else:
        assert isinstance(images, mapped.MappedImages)
    rows = np.array([7, 3, 3, 19])
    batch = images[rows]
    assert batch.dtype == np.float32 and batch.shape == (4, 1, 6, 6)
    np.testing.assert_array_equal(batch, in_memory[rows])
    np.testing.assert_array_equal(np.asarray(images), in_memory)


def test_mapped_npy_is_checked_like_an_in_memory_one(tmp_path):
    bad = np.zeros((10, 4, 4), np.float32)
    bad[9, 3, 3] = np.nan
    np.save(tmp_path / "nan.npy", bad)
    with pytest.raises(datasets.DatasetError, match="holds float pixels from nan to nan"):
        datasets.load(f"npz:{tmp_path / 'nan.npy'}", mapped=True)
    np.save(tmp_path / "wide.npy", np.full((3, 4, 4), 300, np.int16))
    with pytest.raises(datasets.DatasetError, match="integer pixels from 300 to 300"):
        datasets.load(f"npz:{tmp_path / 'wide.npy'}", mapped=True)


def test_value_range_reads_in_chunks():
    array = np.arange(100, dtype=np.float32).reshape(25, 4)
    assert mapped.value_range(array, rows_per_chunk=3) == (0, 99)


def test_mnist_idx_is_decoded_once_to_a_mapped_cache(tmp_path):
    images, labels = write_mnist(tmp_path, gz=True)
    first = datasets.load(f"mnist:{tmp_path}", mapped=True)
    cache = list((tmp_path / ".numpy_dl_cache").iterdir())
    assert len(cache) == 1 and cache[0].suffix == ".npy"
    assert isinstance(first.images, mapped.MappedImages)
    np.testing.assert_array_equal(first.images[np.arange(5)], images[:, None] / np.float32(255))
    np.testing.assert_array_equal(first.labels, labels)
    stamp = cache[0].stat().st_mtime_ns
    again = datasets.load(f"mnist:{tmp_path}", mapped=True)
    assert cache[0].stat().st_mtime_ns == stamp  # read from the cache, not decoded again
    np.testing.assert_array_equal(np.asarray(again.images), np.asarray(first.images))


def test_mnist_cache_moves_home_when_the_data_folder_cannot_hold_it(tmp_path, monkeypatch):
    write_mnist(tmp_path)
    (tmp_path / ".numpy_dl_cache").write_text("a file where the cache folder would go")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    loaded = datasets.load(f"mnist:{tmp_path}", mapped=True)
    assert isinstance(loaded.images, mapped.MappedImages)
    assert len(list((tmp_path / "home" / ".cache" / "numpy_dl").rglob("*.npy"))) == 1
