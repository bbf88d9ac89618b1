"""BLAS threads per rank: the node's cores shared out among the ranks on it.

OpenBLAS and MKL start one thread per core in every process. Eight ranks on an
eight-core node would then run 64 threads that fight over 8 cores, many times slower
than 8 threads, so each rank gets cores-per-node / ranks-per-node unless told otherwise
(PyTorch's launcher sets OMP_NUM_THREADS=1 for the same reason). The limit is set through
threadpoolctl, which works after NumPy is imported.
"""
import os

from threadpoolctl import threadpool_limits

# Set by a user or a batch system, any of these says the thread count is already chosen.
THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
                    "BLIS_NUM_THREADS")


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


def share_cores_unless_chosen(ranks_per_node):
    """The default share for this rank, unless a thread variable is set; returns the
    number set, or None when the environment already decides."""
    if any(os.environ.get(name) for name in THREAD_VARIABLES):
        return None
    return limit_blas_threads(0, ranks_per_node)
