"""Process-wide settings of a training job, applied only when asked for.

`import numpy_dl` changes nothing in the process. Three things here do, and each is
called by the launcher (`python -m numpy_dl.launch`) and may be called by a script:

- `share_cores(ranks_per_node)` / `set_blas_threads(n)`: how many threads BLAS may start.
  OpenBLAS and MKL start one thread per core in every process; eight ranks on an
  eight-core node would run 64 threads fighting over 8 cores, many times slower than 8.
  So each rank gets cores-per-node / ranks-per-node, unless OMP_NUM_THREADS,
  OPENBLAS_NUM_THREADS, MKL_NUM_THREADS or BLIS_NUM_THREADS already says (PyTorch's
  launcher sets OMP_NUM_THREADS=1 for the same reason). Set through threadpoolctl, which
  works after NumPy is loaded. `distributed.init()` calls `share_cores` under MPI.
- `keep_freed_memory()`: glibc's allocator keeps freed blocks for reuse instead of
  handing them back to the OS. A training step allocates and frees the same large
  temporaries every time; by default glibc serves them with fresh mappings that the
  kernel zero-fills page by page, about 13,000 page faults and 30% of a ConvVAE step.
  Opt-in: the launcher calls it (NUMPY_DL_KEEP_MEMORY=0 turns it off); a script may.

One more that `distributed.init()` calls before MPI starts: `progress_mpi_in_background()`
asks Open MPI to move TCP messages in a thread of its own, so that the gradient buckets
DistributedOptimizer all-reduces while backward computes travel while NumPy computes
(MPI otherwise moves a message only inside an MPI call). At 1 Gbit/s it halves the wait
for the last buckets (benchmarks/cluster_network.py). A value the user set is kept;
other MPIs ignore the variable.

And two that only read: `started_by_mpi()` / `rank_and_size()` look at the variables MPI
launchers set, without importing mpi4py (which would start MPI), so that the sampler and
the choice of communicator agree on whether this is an MPI job; `blas_libraries()` lists
the BLAS libraries loaded and their threads, for `info`.
"""
import ctypes
import os
import sys

from threadpoolctl import threadpool_info, threadpool_limits

# ------------------------------------------------------------------ the launcher's environment
_RANK_AND_SIZE = (
    ("PMI_RANK", "PMI_SIZE"),                                   # MPICH, Intel MPI (Hydra)
    ("OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE"),           # Open MPI
    ("PMIX_RANK", "OMPI_COMM_WORLD_SIZE"),                      # PMIx launchers
    ("MV2_COMM_WORLD_RANK", "MV2_COMM_WORLD_SIZE"),             # MVAPICH
)


def _mpi_turned_off():
    return os.environ.get("NUMPY_DL_NO_MPI", "") not in ("", "0")


def started_by_mpi():
    """True when an MPI launcher started this process and NUMPY_DL_NO_MPI is not set."""
    if _mpi_turned_off():
        return False
    return any(rank in os.environ for rank, _ in _RANK_AND_SIZE) or "PMI_FD" in os.environ


def progress_mpi_in_background():
    """Set OMPI_MCA_btl_tcp_progress_thread=1 unless it is set (see the module docstring);
    only effective before MPI starts, which importing mpi4py does."""
    os.environ.setdefault("OMPI_MCA_btl_tcp_progress_thread", "1")


def started_by_torchrun():
    """True when torchrun (torch.distributed.run) started this process: it starts
    processes and sets RANK and WORLD_SIZE, but starts no MPI, so they cannot form one
    MPI job."""
    return "TORCHELASTIC_RUN_ID" in os.environ and "WORLD_SIZE" in os.environ


def launcher_tasks():
    """(task index, number of tasks) that the process's launcher started, from the
    variables of Slurm's srun (a job step's, not the batch script's), of torchrun or of an
    MPI launcher; (0, 1) when none says. `distributed.init()` compares it with the MPI world
    it gets, which is 1 when the tasks did not form one MPI job. NUMPY_DL_NO_MPI=1 says
    each task is meant to run alone: (0, 1)."""
    if _mpi_turned_off():
        return 0, 1
    if "SLURM_STEP_NUM_TASKS" in os.environ and "SLURM_PROCID" in os.environ:
        return int(os.environ["SLURM_PROCID"]), int(os.environ["SLURM_STEP_NUM_TASKS"])
    if started_by_torchrun():
        return int(os.environ.get("RANK", 0)), int(os.environ["WORLD_SIZE"])
    for rank, size in _RANK_AND_SIZE:
        if rank in os.environ and size in os.environ:
            return int(os.environ[rank]), int(os.environ[size])
    return 0, 1


def rank_and_size():
    """(rank, world size) from the launcher's variables; (0, 1) outside MPI."""
    if not started_by_mpi():
        return 0, 1
    for rank, size in _RANK_AND_SIZE:
        if rank in os.environ and size in os.environ:
            return int(os.environ[rank]), int(os.environ[size])
    return 0, 1


# ------------------------------------------------------------------ BLAS threads
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
    """The BLAS threads of a rank that asks for none: its share of the cores available,
    at least 1."""
    return max(1, available_cores() // max(1, ranks_per_node))


def set_blas_threads(requested, ranks_per_node=1):
    """Limit the BLAS libraries to `requested` threads, at most the cores available (0:
    the default share of the cores); returns the number set."""
    threads = min(requested, available_cores()) if requested else default_threads(ranks_per_node)
    threadpool_limits(limits=threads, user_api="blas")
    return threads


def share_cores(ranks_per_node):
    """The default share for this rank, unless a thread variable is set; returns the
    number set, or None when the environment already decides."""
    if any(os.environ.get(name) for name in THREAD_VARIABLES):
        return None
    return set_blas_threads(0, ranks_per_node)


def blas_libraries():
    """[(name, version, threads, threading layer)] for each BLAS loaded in this process."""
    return [(info.get("internal_api", "?"), info.get("version") or "?", info.get("num_threads"),
             info.get("threading_layer", "?"))
            for info in threadpool_info() if info.get("user_api") == "blas"]


def physical_memory():
    """Bytes of memory this machine has (None where the OS does not say), against which
    sizes read from files and options are checked before anything is allocated."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):
        return None


# ------------------------------------------------------------------ the allocator
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3


def keep_freed_memory(mmap_threshold=256 << 20, trim_threshold=1 << 30):
    """Raise glibc's mmap and trim thresholds, so freed blocks up to `mmap_threshold`
    bytes go back to the heap for the next step; returns True when it was tuned. Only
    glibc is tuned; elsewhere, or with NUMPY_DL_KEEP_MEMORY=0, nothing changes."""
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
