"""Process settings: nothing changes at import; the BLAS thread share and the allocator
tuning do what they say when called."""
import os
import platform
import subprocess
import sys

import pytest

from numpy_dl import runtime

# Allocate and free a 40 MiB temporary ten times (glibc maps anything over 32 MiB afresh
# by default, and the kernel zero-fills every page of a fresh mapping), then print the
# page faults those ten allocations took.
FAULTS_OF_TEMPORARIES = """
import resource, sys, numpy as np, numpy_dl, numpy_dl.runtime
if sys.argv[1] == "tuned":
    numpy_dl.runtime.keep_freed_memory()
for _ in range(3):
    np.ones(10 << 20, dtype=np.float32).sum()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(10):
    np.ones(10 << 20, dtype=np.float32).sum()
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""

# Everything process-wide that numpy_dl could touch, before and after importing it all.
SETTINGS_AROUND_IMPORT = """
import sys, warnings
import numpy  # loads BLAS, so its thread count is seen before numpy_dl
from threadpoolctl import threadpool_info

from mpi4py import MPI  # a user's own mpi4py code in the same process

def mpi4py_pickles_lambdas():  # False with mpi4py's own pickler, True with cloudpickle
    try:
        MPI.pickle.dumps(lambda: 0)
        return True
    except Exception:
        return False

def settings():
    return (sys.excepthook, warnings.showwarning, sys.stdout, sys.stderr,
            sorted((i["internal_api"], i["num_threads"]) for i in threadpool_info()),
            mpi4py_pickles_lambdas())

before = settings()
import numpy_dl, numpy_dl.distributed, numpy_dl.launch, numpy_dl.launch.cli, numpy_dl.models
import numpy_dl.distributed.mpi_communicator
print(before == settings())
"""


def python(script, *args, **env):
    out = subprocess.run([sys.executable, "-c", script, *args], env=dict(os.environ, **env),
                         check=True, capture_output=True, text=True)
    return out.stdout.strip()


def test_importing_numpy_dl_changes_no_process_setting():
    pytest.importorskip("mpi4py", reason="also compares mpi4py's pickler")
    assert python(SETTINGS_AROUND_IMPORT) == "True"


glibc_only = pytest.mark.skipif(
    not sys.platform.startswith("linux") or platform.libc_ver()[0] != "glibc",
    reason="tunes glibc only")


@glibc_only
def test_importing_numpy_dl_leaves_the_allocator_alone():
    assert int(python(FAULTS_OF_TEMPORARIES, "imported")) > 2000  # 40 MiB is 10,000 pages


@glibc_only
def test_freed_temporaries_are_reused_without_page_faults_when_asked():
    assert int(python(FAULTS_OF_TEMPORARIES, "tuned")) < 200
    assert int(python(FAULTS_OF_TEMPORARIES, "tuned", NUMPY_DL_KEEP_MEMORY="0")) > 2000


def test_opting_out_changes_nothing(monkeypatch):
    monkeypatch.setenv("NUMPY_DL_KEEP_MEMORY", "0")
    assert runtime.keep_freed_memory() is False


def test_blas_threads_default_to_a_share_of_the_cores(monkeypatch):
    monkeypatch.setattr(runtime, "available_cores", lambda: 8)
    assert [runtime.default_threads(n) for n in (1, 2, 3, 8, 16)] == [8, 4, 2, 1, 1]


@pytest.mark.parametrize("variable", [None] + list(runtime.THREAD_VARIABLES))
def test_a_rank_shares_the_cores_unless_a_thread_variable_is_set(monkeypatch, variable):
    set_to = []
    monkeypatch.setattr(runtime, "threadpool_limits", lambda limits, user_api: set_to.append(limits))
    monkeypatch.setattr(runtime, "available_cores", lambda: 8)
    for name in runtime.THREAD_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    if variable:
        monkeypatch.setenv(variable, "3")
    assert runtime.share_cores(4) == (None if variable else 2)
    assert set_to == ([] if variable else [2])


def test_the_launcher_environment_decides_mpi(monkeypatch):
    for rank, size in runtime._RANK_AND_SIZE:
        monkeypatch.delenv(rank, raising=False)
        monkeypatch.delenv(size, raising=False)
    monkeypatch.delenv("PMI_FD", raising=False)
    monkeypatch.delenv("NUMPY_DL_NO_MPI", raising=False)
    assert runtime.rank_and_size() == (0, 1) and not runtime.started_by_mpi()
    monkeypatch.setenv("OMPI_COMM_WORLD_RANK", "3")
    monkeypatch.setenv("OMPI_COMM_WORLD_SIZE", "8")
    assert runtime.rank_and_size() == (3, 8)
    monkeypatch.setenv("NUMPY_DL_NO_MPI", "1")
    assert runtime.rank_and_size() == (0, 1)
