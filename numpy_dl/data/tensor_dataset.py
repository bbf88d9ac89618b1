"""Datasets: anything with `__len__` and `__getitem__`; TensorDataset also takes a whole
array of indices at once, which is how the DataLoader fetches a batch in one gather."""
import numpy as np


class Dataset:
    """The base of datasets, as `torch.utils.data.Dataset`: a subclass defines `__len__`
    and `__getitem__(index)`, which returns one sample (a tuple of arrays, say)."""

    def __len__(self):
        raise NotImplementedError(f"{type(self).__name__} must define __len__")

    def __getitem__(self, index):
        raise NotImplementedError(f"{type(self).__name__} must define __getitem__")


class TensorDataset(Dataset):
    """Arrays that share their first dimension; item i is the tuple of their rows i."""

    def __init__(self, *arrays):
        if not arrays:
            raise ValueError("TensorDataset needs at least one array")
        self.arrays = tuple(a.data if hasattr(a, "grad") else np.asarray(a) for a in arrays)
        lengths = {len(a) for a in self.arrays}
        if len(lengths) != 1:
            raise ValueError(f"TensorDataset: arrays differ in length: "
                             f"{[len(a) for a in self.arrays]}")

    def __len__(self):
        return len(self.arrays[0])

    def __getitem__(self, index):
        return tuple(a[index] for a in self.arrays)
