"""Images that stay in their file: a memory-mapped array, converted a batch at a time.

A `.npy` file opened with `mmap_mode="r"` is shared by every process of a node through
the page cache, and a process reads only the pages of the samples it indexes: eight ranks
training from one file hold about one copy of it between them, and a file larger than
the memory left for the job trains like a small one (the OS pages samples in and out).
`MappedImages` gives such an array of integer pixels the interface the training code uses
of an in-memory one (len, shape, indexing) and returns float32 in [0, 1]; a file of
float32 pixels in [0, 1] needs no conversion and is used as the mapped array itself.
"""
import numpy as np


class MappedImages:
    """`raw[index] / divisor` as float32 for any index; `raw` is (N, C, H, W)."""

    dtype = np.dtype(np.float32)

    def __init__(self, raw, divisor):
        self.raw, self.divisor = raw, np.float32(divisor)

    @property
    def shape(self):
        return self.raw.shape

    @property
    def ndim(self):
        return self.raw.ndim

    def __len__(self):
        return len(self.raw)

    def __getitem__(self, index):
        return np.asarray(self.raw[index], dtype=np.float32) / self.divisor

    def __array__(self, dtype=None, copy=None):
        """The whole set in memory, for code that needs one array."""
        images = self[:]
        return images if dtype is None else images.astype(dtype)


def value_range(array, rows_per_chunk=4096):
    """(min, max) of a mapped array, read in chunks of rows so that checking a file
    larger than memory never holds more than a chunk (NaN makes both NaN)."""
    low, high = None, None
    for start in range(0, len(array), rows_per_chunk):
        chunk = np.asarray(array[start:start + rows_per_chunk])
        chunk_low, chunk_high = chunk.min(), chunk.max()
        low = chunk_low if low is None else min(low, chunk_low)
        high = chunk_high if high is None else max(high, chunk_high)
        if np.isnan(low) or np.isnan(high):
            return np.nan, np.nan
    return low, high
