"""Whole jobs under `mpirun -n 4`: a rank that raises, or that stops calling collectives,
must end the job quickly with a message that names it, never leave it hanging."""
import pytest

from distributed_helpers import needs_mpirun, output_of, run_script

pytestmark = needs_mpirun


def test_an_uncaught_exception_aborts_the_whole_job():
    result, seconds = run_script("raise_on_rank.py", ranks=4, timeout=60)
    assert result.returncode != 0 and seconds < 30, output_of(result)
    assert "[rank 2] ValueError: rank 2 failed on purpose at step 3" in result.stderr
    assert "[rank 2] Traceback" in result.stderr
    assert "not reached" not in result.stdout


@pytest.mark.slow
def test_the_stall_watchdog_names_the_rank_that_never_arrived():
    result, seconds = run_script("stall_on_rank.py", ranks=4, timeout=60,
                                 NUMPY_DL_STALL_TIMEOUT=2)
    assert result.returncode != 0 and seconds < 30, output_of(result)
    report = result.stderr
    assert "stall watchdog" in report and "in allreduce_" in report, output_of(result)
    assert "step 3" in report and "never arrived: [1]" in report, output_of(result)
    assert "rank 1: not in a collective" in report, output_of(result)
