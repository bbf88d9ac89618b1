"""Rank and world size as MPI launchers announce them in the environment.

Read without importing mpi4py, so that code below `numpy_dl.distributed` (the sampler)
and the communicator's choice of backend agree on whether this is an MPI job.
"""
import os

_RANK_AND_SIZE = (
    ("PMI_RANK", "PMI_SIZE"),                                   # MPICH, Intel MPI (Hydra)
    ("OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE"),           # Open MPI
    ("PMIX_RANK", "OMPI_COMM_WORLD_SIZE"),                      # PMIx launchers
    ("MV2_COMM_WORLD_RANK", "MV2_COMM_WORLD_SIZE"),             # MVAPICH
)


def started_by_mpi():
    """True when an MPI launcher started this process and NUMPY_DL_NO_MPI is not set."""
    if os.environ.get("NUMPY_DL_NO_MPI", "") not in ("", "0"):
        return False
    return any(rank in os.environ for rank, _ in _RANK_AND_SIZE) or "PMI_FD" in os.environ


def rank_and_size():
    """(rank, world size) from the launcher's variables; (0, 1) outside MPI."""
    if not started_by_mpi():
        return 0, 1
    for rank, size in _RANK_AND_SIZE:
        if rank in os.environ and size in os.environ:
            return int(os.environ[rank]), int(os.environ[size])
    return 0, 1
