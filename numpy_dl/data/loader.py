"""DataLoader: batches of NumPy arrays, fetched with one fancy-index gather per array."""
import math

import numpy as np

from .. import random


class DataLoader:
    """Yields tuples of arrays of up to `batch_size` rows; `len()` is the number of batches.

    Order: the sampler's if one is given, else a new permutation per epoch when `shuffle`
    (from `seed` if given, else numpy_dl's generator, which `ndl.manual_seed` resets).
    """

    def __init__(self, dataset, batch_size=1, shuffle=False, drop_last=False, sampler=None,
                 seed=None):
        if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) \
                or batch_size < 1:
            raise ValueError(f"DataLoader: batch_size must be a positive integer, got {batch_size!r}")
        if sampler is not None and shuffle:
            raise ValueError("DataLoader: give either sampler or shuffle=True, not both "
                             "(the sampler decides the order)")
        self.dataset, self.batch_size = dataset, int(batch_size)
        self.shuffle, self.drop_last, self.sampler = shuffle, drop_last, sampler
        self._rng = np.random.default_rng(seed) if seed is not None else None

    def _order(self):
        if self.sampler is not None:
            indices = getattr(self.sampler, "indices", None)
            return np.asarray(indices() if callable(indices) else list(self.sampler))
        if self.shuffle:
            rng = self._rng if self._rng is not None else random.generator()
            return rng.permutation(len(self.dataset))
        return np.arange(len(self.dataset))

    def __len__(self):
        count = len(self.sampler) if self.sampler is not None else len(self.dataset)
        return count // self.batch_size if self.drop_last else math.ceil(count / self.batch_size)

    def _fetch(self, batch):
        arrays = getattr(self.dataset, "arrays", None)
        if arrays is not None:
            return tuple(a[batch] for a in arrays)
        items = [self.dataset[int(i)] for i in batch]
        if not isinstance(items[0], tuple):
            return np.stack(items)
        return tuple(np.stack(column) for column in zip(*items))

    def __iter__(self):
        order = self._order()
        for start in range(0, len(self) * self.batch_size, self.batch_size):
            yield self._fetch(order[start:start + self.batch_size])
