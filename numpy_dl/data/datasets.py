"""Image datasets for the autoencoders: one contract, several sources.

Every loader returns an `ImageData(images, labels)` named tuple: `images` is float32 of
shape (N, C, H, W) with values in [0, 1], which is what the models' Sigmoid outputs and
the BCE losses assume, and `labels` is int64 of shape (N,), or None when the source has
none. The sources are two sets of real digits shipped inside the package (so training
works offline and from an installed wheel: the UCI 8x8 digits, and 5,000 MNIST 28x28
digits at the user guide's sizes), MNIST and Fashion-MNIST read from the IDX files in a
directory the user names (the package never downloads), images saved as `.npz`/`.npy`
(read without pickle, so an untrusted file cannot run code), and a seeded synthetic set
of any size for benchmarks. `load(spec)` maps the command line's dataset argument onto
them. Anything unusable raises `DatasetError`, a ValueError whose message names the file
or spec at fault and what was expected, so the launcher can print it as one line.
"""
import gzip
import hashlib
import io
import math
import operator
import os
import zipfile
import zlib
from importlib import resources
from pathlib import Path
from typing import NamedTuple, Optional

import numpy as np

from .. import runtime
from .mapped import MappedImages, value_range
from .npy_files import map_npy, read_npy, read_npz

__all__ = ["DatasetError", "ImageData", "SPEC_FORMS", "SYNTHETIC_SHAPES", "load",
           "load_digits", "load_mnist_5k", "load_mnist", "load_fashion_mnist", "load_array_file",
           "synthetic_images", "train_val_split"]

SPEC_FORMS = ("digits", "mnist-5k", "mnist:DIR", "fashion-mnist:DIR", "npz:PATH (.npz or .npy)",
              "synthetic", "synthetic:N")
SYNTHETIC_SHAPES = ("blob", "rectangle", "ring", "cross")  # label k is SYNTHETIC_SHAPES[k]

_DIGITS_FILE = "uci_digits_8x8.npz"
_MNIST_5K_FILE = "mnist_5k_28x28.npz"
_IDX_IMAGES_MAGIC, _IDX_LABELS_MAGIC = 0x00000803, 0x00000801  # unsigned bytes, 3-d / 1-d
_SYNTHETIC_CHUNK_PIXELS = 1 << 22  # bounds the renderer's temporaries to ~16 MB each
MAX_CLASSES = 1 << 20  # a label is a class index; a conditional model one-hot codes them


class DatasetError(ValueError):
    """A dataset file or spec that cannot be used; the message says what and why."""


class ImageData(NamedTuple):
    """Images float32 (N, C, H, W) in [0, 1] and labels int64 (N,) or None."""
    images: np.ndarray
    labels: Optional[np.ndarray]


# ---------------------------------------------------------------- built-in digits

def load_digits():
    """The 1,797 UCI handwritten digits (8x8, ten classes) shipped with the package; see
    DIGITS.md beside the file for its origin and license."""
    # Pixels are counts of set cells in a 4x4 block of the 32x32 scan, so 16 is full ink.
    return _packaged(_DIGITS_FILE, full_ink=16)


def load_mnist_5k():
    """5,000 real MNIST digits (28x28, 500 of each class) shipped with the package, so the
    user guide's sizes (784 inputs, 28x28 images) train on real data offline; see
    MNIST_5K.md beside the file for its origin and license (CC BY-SA 3.0)."""
    return _packaged(_MNIST_5K_FILE, full_ink=255)


def _packaged(name, full_ink):
    """A dataset file shipped in this package: uint8 'images' (N, H, W) and 'labels'.

    Read through importlib.resources so it works from a source tree, an installed wheel or
    a zip."""
    raw = resources.files(__package__).joinpath(name).read_bytes()
    with np.load(io.BytesIO(raw), allow_pickle=False) as archive:
        images, labels = archive["images"], archive["labels"]
    return ImageData((images.astype(np.float32) / np.float32(full_ink))[:, None],
                     labels.astype(np.int64))


# ---------------------------------------------------------------- MNIST (IDX files)

def load_mnist(directory, train=True, mapped=False):
    """MNIST from its four standard IDX files (plain or .gz) in `directory`.

    `train` picks train-* (60,000 images) or t10k-* (10,000). Nothing is downloaded: HPC
    compute nodes are often offline, so users fetch the files once and name the folder.
    With `mapped`, the images are decoded once to a `.npy` cache (see `_idx_cache`) and
    memory-mapped from it, as a `.npy` dataset is.
    """
    return _load_idx_pair(directory, train, "mnist", mapped)


def load_fashion_mnist(directory, train=True, mapped=False):
    """Fashion-MNIST, which ships under the same IDX file names and format as MNIST."""
    return _load_idx_pair(directory, train, "fashion-mnist", mapped)


def _idx_names(train):
    split = "train" if train else "t10k"
    return f"{split}-images-idx3-ubyte", f"{split}-labels-idx1-ubyte"


def _load_idx_pair(directory, train, title, mapped=False):
    directory = Path(directory)
    names = _idx_names(train)
    expected = f"expected {names[0]} and {names[1]} (each plain or .gz) in {directory}"
    if not directory.is_dir():
        raise DatasetError(f"{title}: directory {directory} does not exist; {expected}")
    paths = [_find_plain_or_gz(directory / name) for name in names]
    missing = [name for name, path in zip(names, paths) if path is None]
    if missing:
        raise DatasetError(f"{title}: {directory} has no {' or '.join(missing)}; {expected}")
    arrays = []
    for path, magic, ndim in zip(paths, (_IDX_IMAGES_MAGIC, _IDX_LABELS_MAGIC), (3, 1)):
        def decode(path=path, magic=magic, ndim=ndim):
            try:
                return _parse_idx(_read_maybe_gzipped(path), magic, ndim)
            except _MalformedIdx as problem:
                raise DatasetError(f"{title}: {path} is malformed: {problem}; "
                                   f"{expected}") from None
        arrays.append(_idx_cache(path, decode) if mapped and ndim == 3 else decode())
    images, labels = arrays
    if len(images) != len(labels):
        raise DatasetError(f"{title}: {directory} holds {len(images)} images but "
                           f"{len(labels)} labels; expected one label per image")
    if isinstance(images, np.memmap):
        return ImageData(MappedImages(images[:, None], 255), labels.astype(np.int64))
    return ImageData((images.astype(np.float32) / np.float32(255))[:, None],
                     labels.astype(np.int64))


def _idx_cache(path, decode):
    """The IDX file `path` decoded once (by `decode()`) into a `.npy` file and mapped.

    The cache sits in a `.numpy_dl_cache` folder beside the IDX files, or in
    ~/.cache/numpy_dl where that folder cannot be written; its name holds the IDX file's
    size and modification time, so a changed file is decoded again. Every rank may write
    it at once: each writes a file of its own and renames it into place, and the copies
    are identical. Where nothing can be written, the images stay in memory."""
    stat = path.stat()
    name = f"{path.name}.{stat.st_size}-{stat.st_mtime_ns}.npy"
    where = hashlib.sha256(str(path.resolve()).encode()).hexdigest()[:16]
    home = Path.home() / ".cache" / "numpy_dl" / where
    for folder in (path.parent / ".numpy_dl_cache", home):
        cached = folder / name
        try:
            if not cached.is_file():
                decoded = decode()
                folder.mkdir(parents=True, exist_ok=True)
                partial = folder / f".{name}.{os.getpid()}.tmp"
                with open(partial, "wb") as file:
                    np.save(file, decoded)
                os.replace(partial, cached)
            return map_npy(cached)
        except OSError:
            continue
    return decode()


class _MalformedIdx(Exception):
    """What is wrong with one IDX file; the caller adds which file and what was expected."""


def _find_plain_or_gz(path):
    gz = path.with_name(path.name + ".gz")
    return path if path.is_file() else gz if gz.is_file() else None


def _read_maybe_gzipped(path):
    if path.suffix != ".gz":
        return path.read_bytes()
    try:
        with gzip.open(path, "rb") as stream:
            return stream.read()
    except (OSError, EOFError, zlib.error) as error:
        raise _MalformedIdx(f"it is not a complete gzip file ({error})") from None


def _parse_idx(data, magic, ndim):
    """The array in an IDX file: a big-endian magic number, `ndim` uint32 sizes, bytes.

    Every size is checked against the bytes actually present, so a truncated download
    fails here with its numbers rather than later as a reshape error.
    """
    header = 4 * (1 + ndim)
    if len(data) < header:
        raise _MalformedIdx(f"it is {len(data)} bytes, shorter than the {header}-byte header")
    found, *dims = (int(v) for v in np.frombuffer(data, ">u4", count=1 + ndim))
    if found != magic:
        kind = "image" if magic == _IDX_IMAGES_MAGIC else "label"
        raise _MalformedIdx(f"its magic number is 0x{found:08x}, not 0x{magic:08x} "
                            f"(an IDX {kind} file of unsigned bytes)")
    if 0 in dims:
        raise _MalformedIdx(f"its header gives shape {tuple(dims)}, which holds no data")
    if len(data) - header != math.prod(dims):
        raise _MalformedIdx(f"its header gives shape {tuple(dims)} ({math.prod(dims)} bytes) "
                            f"but {len(data) - header} bytes follow it")
    return np.frombuffer(data, np.uint8, offset=header).reshape(dims)


# ---------------------------------------------------------------- .npz / .npy files

def load_array_file(path, mapped=False):
    """Images (and optional labels) from a `.npy` or `.npz` file, read without pickle.

    With `mapped`, a `.npy` file stays in the file, memory-mapped (see mapped.py): the
    images are the mapped array itself when they are float32 already, else a
    MappedImages that converts the samples indexed; a `.npz` (compressed, zipped) is
    always read into memory.

    A `.npy` holds the images alone. A `.npz` holds them under 'images' or 'x' and may
    hold labels under 'labels' or 'y'. Images may be (N, H, W), (N, C, H, W) or flat
    (N, D) rows with D a perfect square (taken as one-channel s x s images). Integer
    pixels are divided by 255 when their maximum exceeds 1 (so 0/1 masks stay as they
    are); float pixels must already lie in [0, 1], because guessing a rescale of floats
    would silently change what the user's reconstruction losses mean.
    """
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"{path} does not exist; expected a .npz or .npy file of images")
    try:
        if zipfile.is_zipfile(path):
            images, labels = _npz_arrays(read_npz(path), path)
        else:
            images, labels = (map_npy(path) if mapped else read_npy(path)), None
    except DatasetError:
        raise
    except Exception as error:  # zipfile's and NumPy's parsers fail in many ways on damage
        # NumPy's own words for a pickled file suggest loading it unsafely: never.
        detail = (": it is not a NumPy array file, or holds Python objects" if "pickle" in str(error)
                  else f" ({type(error).__name__}: {str(error)[:200]})")
        raise DatasetError(f"{path} could not be read as a .npy or .npz file without pickle"
                           f"{detail}; expected numeric arrays saved by NumPy") from None
    images = _as_images(images, path)
    return ImageData(images, None if labels is None else _as_labels(labels, len(images), path))


def _npz_arrays(loaded, path):
    keys = set(loaded)
    image_key = next((k for k in ("images", "x") if k in keys), None)
    if image_key is None:
        raise DatasetError(f"{path} has no 'images' or 'x' array (it holds "
                           f"{', '.join(sorted(keys)) or 'nothing'}); expected the images "
                           f"under 'images' or 'x' and optional labels under 'labels' or 'y'")
    label_key = next((k for k in ("labels", "y") if k in keys), None)
    return loaded[image_key], None if label_key is None else loaded[label_key]


def _as_images(array, source):
    if array.size == 0:
        raise DatasetError(f"{source} holds an empty array of shape {array.shape}; "
                           f"expected at least one image")
    if array.ndim == 2:
        side = math.isqrt(array.shape[1])
        if side * side != array.shape[1]:
            raise DatasetError(f"{source} holds flat rows of {array.shape[1]} values, not a "
                               f"square number; expected (N, H, W), (N, C, H, W) or (N, D) "
                               f"with D a perfect square")
        array = array.reshape(len(array), 1, side, side)
    elif array.ndim == 3:
        array = array[:, None]
    elif array.ndim != 4:
        raise DatasetError(f"{source} holds an array of shape {array.shape}; expected "
                           f"(N, H, W), (N, C, H, W) or (N, D) with D a perfect square")
    return _to_unit_float(array, source)


def _to_unit_float(array, source):
    is_integer = array.dtype == np.bool_ or np.issubdtype(array.dtype, np.integer)
    if not (is_integer or np.issubdtype(array.dtype, np.floating)):
        raise DatasetError(f"{source} holds {array.dtype} images; expected integer or "
                           f"floating-point pixels")
    mapped = isinstance(array, np.memmap)
    low, high = value_range(array) if mapped else (array.min(), array.max())
    if is_integer and (low < 0 or high > 255):
        raise DatasetError(f"{source} holds integer pixels from {low} to {high}; "
                           f"expected 0..255 (or 0..1)")
    if not is_integer and not (low >= 0 and high <= 1):  # written so that NaN fails too
        raise DatasetError(f"{source} holds float pixels from {low} to {high}; expected "
                           f"values in [0, 1] (scale them before saving)")
    divisor = 255 if is_integer and high > 1 else 1
    if mapped:  # converted a batch at a time, so the file stays shared and paged
        return array if array.dtype == np.float32 else MappedImages(array, divisor)
    return array.astype(np.float32) / np.float32(divisor) if divisor > 1 \
        else array.astype(np.float32, copy=False)


def _as_labels(labels, count, source):
    if labels.shape != (count,):
        raise DatasetError(f"{source} holds labels of shape {labels.shape}; expected "
                           f"({count},), one per image")
    if not np.issubdtype(labels.dtype, np.integer):
        raise DatasetError(f"{source} holds {labels.dtype} labels; expected integer classes")
    if labels.min() < 0:
        raise DatasetError(f"{source} holds negative labels; expected classes 0, 1, 2, ...")
    if labels.max() >= MAX_CLASSES:
        raise DatasetError(f"{source} holds labels up to {labels.max()}; expected classes "
                           f"0, 1, 2, ... below {MAX_CLASSES:,}")
    return labels.astype(np.int64)


# ---------------------------------------------------------------- synthetic images

def synthetic_images(num_samples=1024, image_size=28, channels=1, seed=0):
    """A seeded set of soft-edged shapes, for benchmarks at any size and count.

    Each image holds one shape of a random position, size, aspect and rotation, its label
    the shape's kind (`SYNTHETIC_SHAPES`, classes balanced), and one random intensity per
    channel in [0.5, 1]. Edges are about a pixel wide so the images are smooth and an
    autoencoder can learn them, which keeps benchmark losses meaningful. The same
    arguments give the same arrays on every machine and every rank.
    """
    count = _positive_int(num_samples, "num_samples")
    size = _positive_int(image_size, "image_size")
    channels = _positive_int(channels, "channels")
    needed, memory = count * channels * size * size * 4, runtime.physical_memory()
    if memory is not None and needed > memory:
        raise DatasetError(f"{count:,} synthetic images of {channels}x{size}x{size} would take "
                           f"{needed / 2 ** 30:,.1f} GiB; this machine has "
                           f"{memory / 2 ** 30:,.1f} GiB")
    rng = np.random.default_rng(seed)
    labels = rng.permutation(np.arange(count) % len(SYNTHETIC_SHAPES)).astype(np.int64)
    centres = rng.uniform(-0.25, 0.25, (count, 2)).astype(np.float32)
    halves = rng.uniform(0.3, 0.55, (count, 2)).astype(np.float32)
    angles = rng.uniform(0, np.pi, count).astype(np.float32)
    colours = rng.uniform(0.5, 1.0, (count, channels, 1, 1)).astype(np.float32)
    grid = ((np.arange(size, dtype=np.float32) + 0.5) * np.float32(2 / size) - 1)
    images = np.empty((count, channels, size, size), np.float32)
    chunk = max(1, _SYNTHETIC_CHUNK_PIXELS // (size * size))
    for start in range(0, count, chunk):
        rows = slice(start, start + chunk)
        masks = _render(labels[rows], centres[rows], halves[rows], angles[rows], grid)
        np.multiply(masks[:, None], colours[rows], out=images[rows])
    return ImageData(images, labels)


def _render(kinds, centres, halves, angles, grid):
    """Shapes in [0, 1] on a [-1, 1]^2 pixel-centre grid, one NumPy pass per shape kind."""
    cos, sin = np.cos(angles)[:, None, None], np.sin(angles)[:, None, None]
    dx = grid[None, None, :] - centres[:, 0, None, None]
    dy = grid[None, :, None] - centres[:, 1, None, None]
    u, v = dx * cos + dy * sin, dy * cos - dx * sin  # coordinates in the shape's own frame
    a, b = halves[:, 0, None, None], halves[:, 1, None, None]
    edge = np.float32(2 / len(grid))  # one pixel
    masks = np.empty(u.shape, np.float32)
    for kind, draw in enumerate((_blob, _rectangle, _ring, _cross)):
        chosen = kinds == kind
        masks[chosen] = draw(u[chosen], v[chosen], a[chosen], b[chosen], edge)
    return masks


def _step(distance, edge):
    """0 outside, 1 inside, rising smoothly over about a pixel where `distance` is 0."""
    return 0.5 + 0.5 * np.tanh(distance / edge)


def _blob(u, v, a, b, edge):
    return np.exp(-2 * ((u / a) ** 2 + (v / b) ** 2))


def _rectangle(u, v, a, b, edge):
    return _step(a - np.abs(u), edge) * _step(b - np.abs(v), edge)


def _ring(u, v, a, b, edge):
    radius = np.sqrt((u / a) ** 2 + (v / b) ** 2)
    half_width = np.maximum(np.float32(0.1), edge)
    return _step(half_width - np.abs(radius - 1) * np.minimum(a, b), edge)


def _cross(u, v, a, b, edge):
    half_width = np.maximum(np.float32(0.1), edge)
    along_u = _step(a - np.abs(u), edge) * _step(half_width - np.abs(v), edge)
    along_v = _step(half_width - np.abs(u), edge) * _step(b - np.abs(v), edge)
    return np.maximum(along_u, along_v)


def _positive_int(value, name):
    try:
        number = operator.index(value)
    except TypeError:
        number = 0
    if number < 1:
        raise DatasetError(f"{name} must be a positive integer, got {value!r}")
    return number


# ---------------------------------------------------------------- specs and splits

def load(spec, train=True, mapped=False):
    """The dataset a command-line spec names: one of `SPEC_FORMS`.

    `train` picks MNIST's and Fashion-MNIST's training or test files; the other sources
    are a single set, which `train_val_split` divides. `mapped` leaves a `.npy` file's
    images in the file, memory-mapped (see load_array_file), as the launcher does.
    """
    kind, has_argument, argument = str(spec).strip().partition(":")
    if kind == "digits" and not has_argument:
        return load_digits()
    if kind == "mnist-5k" and not has_argument:
        return load_mnist_5k()
    if kind == "synthetic":
        if not has_argument:
            return synthetic_images()
        count = int(argument) if argument.isdecimal() else 0
        if count < 1:
            raise DatasetError(f"dataset {spec!r} needs a positive integer count, as in "
                               f"synthetic:10000")
        return synthetic_images(count)
    loaders = {"mnist": lambda where: load_mnist(where, train, mapped),
               "fashion-mnist": lambda where: load_fashion_mnist(where, train, mapped),
               "npz": lambda path: load_array_file(path, mapped)}
    if kind in loaders and argument:
        return loaders[kind](argument)
    raise DatasetError(f"unknown dataset {spec!r}; expected one of {', '.join(SPEC_FORMS)}")


def train_val_split(n, val_fraction=0.1, seed=0):
    """Disjoint, sorted index arrays (train, val) covering range(n), the same for a seed.

    Seeded rather than drawn from the global generator so every rank, and a resumed run,
    holds out the same samples. The validation part is val_fraction * n rounded, at least
    one sample when val_fraction > 0, and always leaves at least one for training.
    """
    n = _positive_int(n, "n")
    if not 0 <= val_fraction < 1:
        raise DatasetError(f"val_fraction must lie in [0, 1), got {val_fraction!r}")
    val_count = min(max(round(n * val_fraction), int(val_fraction > 0)), n - 1)
    order = np.random.default_rng(seed).permutation(n)
    return np.sort(order[val_count:]), np.sort(order[:val_count])
