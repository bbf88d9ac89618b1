"""Run the collective test files under `mpirun -n 2`, `-n 3` and `-n 4`.

Those files hold at any world size they can run at, and plain pytest runs them on a world
of one; this wrapper makes the one test command cover the multi-rank runs too. Deterministic
mode (test_deterministic.py, and test_checkpoint.py's deterministic runs) needs a world
size that divides its micro-batches, so 3 ranks run the other files: join() with uneven
shards at a third size, and the ops where Adasum (a power of two only) skips. Each run is a
child pytest with pytest-mpi's --with-mpi on every rank, one BLAS thread per rank, and a
short stall timeout, so a test that leaves ranks out of step is reported instead of hanging.
"""
import os
import sys

import pytest

from distributed_helpers import mpirun_command, needs_mpirun, output_of, run

ANY_SIZE_TEST_FILES = ["test_distributed_comm.py", "test_distributed_optimizer.py",
                       "test_distributed_join.py"]
COLLECTIVE_TEST_FILES = ANY_SIZE_TEST_FILES + ["test_deterministic.py", "test_checkpoint.py"]

pytestmark = needs_mpirun


@pytest.mark.slow
@pytest.mark.parametrize("ranks, files", [(2, COLLECTIVE_TEST_FILES), (4, COLLECTIVE_TEST_FILES),
                                          (3, ANY_SIZE_TEST_FILES)], ids=["2", "4", "3"])
def test_collective_suites_pass_under_mpirun(ranks, files):
    pytest.importorskip("pytest_mpi", reason="the MPI runs use pytest-mpi's --with-mpi")
    here = os.path.dirname(os.path.abspath(__file__))
    command = [*mpirun_command(ranks), sys.executable, "-m", "pytest", "--with-mpi",
               "-q", "-p", "no:cacheprovider",
               *(os.path.join(here, name) for name in files)]
    result, _ = run(command, timeout=300, NUMPY_DL_STALL_TIMEOUT=60)
    assert result.returncode == 0, output_of(result)
