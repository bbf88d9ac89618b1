"""BLAS threads per rank: the node's cores shared out among the ranks on it.

OpenBLAS and MKL start one thread per core in every process. Eight ranks on an
eight-core node would then run 64 threads that fight over 8 cores, which is slower than
8 threads, so each rank gets cores-per-node / ranks-per-node unless told otherwise. The
limit is set through threadpoolctl, which works after NumPy is imported; the launcher
sets it before loading data or building a model, so no heavy NumPy work runs before it.
"""
import os

from threadpoolctl import threadpool_info, threadpool_limits


def available_cores():
    """The cores this process may run on (its CPU affinity, which a batch system's
    cpuset narrows), else the machine's count."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def default_threads(ranks_per_node):
    return max(1, available_cores() // max(1, ranks_per_node))


def limit_blas_threads(requested, ranks_per_node):
    """Limit the BLAS libraries to `requested` threads (0: the default share); returns
    the number set."""
    threads = requested or default_threads(ranks_per_node)
    threadpool_limits(limits=threads, user_api="blas")
    return threads


def blas_libraries():
    """[(name, version, threads, threading layer)] for each BLAS loaded in this process."""
    return [(info.get("internal_api", "?"), info.get("version") or "?", info.get("num_threads"),
             info.get("threading_layer", "?"))
            for info in threadpool_info() if info.get("user_api") == "blas"]
