"""The `info` command: what a job would run on, to check a cluster setup before training.

It reports the numpy_dl and NumPy versions, the MPI library (read from mpi4py under an
MPI launcher; without one, only whether mpi4py is installed, because importing it would
start MPI), the world size and ranks per node, and the BLAS library with the threads a
rank gets. It works with and without MPI.
"""
import importlib.metadata
import platform
import sys

import numpy as np

import numpy_dl
from ..distributed import SingleProcessCommunicator
from ..runtime import available_cores, blas_libraries, default_threads


def run(args, comm, console):
    """Print the report on rank 0 (the launcher has set the BLAS threads already)."""
    threads = default_threads(comm.ranks_per_node)
    lines = [
        f"numpy_dl {numpy_dl.__version__}, NumPy {np.__version__}, Python "
        f"{platform.python_version()} ({sys.executable})",
        f"MPI: {mpi_library(comm)}",
        f"world size: {comm.size}",
        f"ranks per node: {comm.ranks_per_node}",
        f"cores available to a rank: {available_cores()}; --threads 0 gives a rank "
        f"{threads} BLAS thread{'s' * (threads != 1)} (cores / ranks per node)",
    ]
    for name, version, count, layer in blas_libraries() or [("none found", "", None, "")]:
        lines.append(f"BLAS: {name} {version} ({layer} threading), {count} "
                     f"thread{'s' * (count != 1)} in this rank")
    for line in lines:
        console.say(line)
    return 0


def mpi_library(comm):
    if not isinstance(comm, SingleProcessCommunicator):
        from mpi4py import MPI  # already imported by the communicator
        version = MPI.Get_library_version().strip().splitlines()[0]
        standard = "{}.{}".format(*MPI.Get_version())
        return f"{version} (MPI standard {standard}, mpi4py {_installed('mpi4py')})"
    return (f"not started by an MPI launcher: running as a single process (mpi4py "
            f"{_installed('mpi4py')})")


def _installed(package):
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"
