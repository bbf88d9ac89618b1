"""Keep freed memory for reuse instead of handing it back to the OS after every step.

A training step allocates and frees the same large temporaries (patch matrices,
activations, gradients) every time. By default glibc serves big blocks with fresh
mappings that the kernel zero-fills page by page: about 13,000 page faults per ConvVAE
step, a third of its time. Raising glibc's mmap and trim thresholds makes freed blocks go
back to the heap, where the next step finds them. Only glibc is tuned; elsewhere, or
with NUMPY_DL_KEEP_MEMORY=0, nothing changes.
"""
import ctypes
import os
import sys

_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3


def keep_freed_memory(mmap_threshold=256 << 20, trim_threshold=1 << 30):
    """Tune glibc's allocator; returns True when it was tuned."""
    if os.environ.get("NUMPY_DL_KEEP_MEMORY", "1") == "0" or not sys.platform.startswith("linux"):
        return False
    try:
        # The process's own symbols include libc's; no library search, which would start
        # a subprocess inside what may be an MPI rank.
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    return bool(mallopt(_M_MMAP_THRESHOLD, mmap_threshold)) and bool(
        mallopt(_M_TRIM_THRESHOLD, trim_threshold))
