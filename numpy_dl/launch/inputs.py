"""The data a command works on: a dataset spec loaded, and split into training and
validation samples the same way on every rank and in every command."""
import os
from dataclasses import dataclass
from typing import Optional

import numpy as np

from ..data import datasets
from .errors import UsageError

SPLITS = ("all", "train", "val")
TEST_FILES = ("mnist", "fashion-mnist")  # the dataset kinds with test files of their own


@dataclass
class Data:
    spec: str
    images: np.ndarray               # (N, C, H, W) float32 in [0, 1], or a MappedImages
    labels: Optional[np.ndarray]     # (N,) int64, or None

    @property
    def image_shape(self):
        return tuple(self.images.shape[1:])

    @property
    def num_classes(self):
        return None if self.labels is None else int(self.labels.max()) + 1

    def labels_at(self, indices):
        return None if self.labels is None else self.labels[indices]


def load(spec, test=False):
    """The dataset `spec` names (see datasets.SPEC_FORMS), or with `test` its test files
    (MNIST's t10k-*, see has_test_files); raises DatasetError. A `.npy` file stays
    memory-mapped, read a batch at a time and shared by the node's ranks."""
    images, labels = datasets.load(spec, train=not test, mapped=True)
    return Data(spec, images, labels)


def has_test_files(spec):
    return str(spec).strip().partition(":")[0] in TEST_FILES


def with_absolute_path(spec):
    """`spec` with its file or directory made absolute: a run stores the spec it trained
    on, and later commands read it from wherever they are started."""
    kind, has_argument, where = str(spec).strip().partition(":")
    if kind in ("mnist", "fashion-mnist", "npz") and where:
        return f"{kind}:{os.path.abspath(os.path.expanduser(where))}"
    return spec


def split(count, val_fraction, seed):
    """(training indices, validation indices): seeded, so every rank, a resumed run and
    the commands that read its checkpoint hold out the same samples."""
    if val_fraction == 0:
        return np.arange(count), np.arange(0)
    return datasets.train_val_split(count, val_fraction, seed)


def select(data, which, val_fraction, seed):
    """The indices of split `which` (all, train or val) of a run's data."""
    if which == "all":
        return np.arange(len(data.images))
    train, val = split(len(data.images), val_fraction, seed)
    chosen = train if which == "train" else val
    if len(chosen) == 0:
        raise UsageError(f"split {which!r} of {data.spec} is empty (val-fraction "
                         f"{val_fraction}); use --split all")
    return chosen


def check_shape(data, image_shape, source):
    """Refuse data whose images the model was not built for."""
    if data.image_shape != tuple(image_shape):
        shape = "x".join(map(str, image_shape))
        raise UsageError(f"dataset {data.spec} has images of shape "
                         f"{'x'.join(map(str, data.image_shape))} but {source} was trained on "
                         f"{shape}; use a dataset of {shape} images")
