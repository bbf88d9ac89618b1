"""The BLAS libraries this process loaded, and their thread counts, for `info`.

Sharing the cores among the ranks lives in `numpy_dl.distributed.blas_threads`; the
launcher sets the share before loading data or building a model, so no heavy NumPy work
runs before it.
"""
from threadpoolctl import threadpool_info


def blas_libraries():
    """[(name, version, threads, threading layer)] for each BLAS loaded in this process."""
    return [(info.get("internal_api", "?"), info.get("version") or "?", info.get("num_threads"),
             info.get("threading_layer", "?"))
            for info in threadpool_info() if info.get("user_api") == "blas"]
