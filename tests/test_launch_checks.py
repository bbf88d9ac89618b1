"""Launch checks: tasks that did not form one MPI job (srun without an MPI plugin,
torchrun), or cannot import mpi4py, stop at once with one line from task 0 (exit 2)
instead of training as separate one-rank jobs into the same directory; --threads never asks for more threads than cores."""
import os
import sys

import pytest

from distributed_helpers import REPO, UNDER_MPI, run

pytestmark = pytest.mark.skipif(UNDER_MPI, reason="starts its own processes")


def launch(tmp_path, *argv, **env):
    """`python -m numpy_dl.launch ARGV` in a child with `env` added to this environment."""
    result, _ = run([sys.executable, "-m", "numpy_dl.launch", *map(str, argv)], timeout=60,
                    **env)
    return result


@pytest.mark.parametrize("variables", [
    {"SLURM_STEP_NUM_TASKS": "4", "SLURM_PROCID": "0"},  # srun without --mpi
])
def test_tasks_that_formed_no_mpi_job_stop_with_one_line(tmp_path, variables):
    result = launch(tmp_path, "train", "--out", tmp_path / "run", **variables)
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1, result.stderr
    assert "4 tasks were started, but they did not form one MPI job" in result.stderr
    assert "--mpi=pmi2" in result.stderr
    assert not (tmp_path / "run").exists()
    other = launch(tmp_path, "train", "--out", tmp_path / "run",
                   **{**variables, "SLURM_PROCID": "3"})
    assert other.returncode == 2 and other.stderr == ""  # task 0 alone reports


def test_processes_started_by_torchrun_stop_with_one_line_naming_mpirun(tmp_path):
    torchrun = {"TORCHELASTIC_RUN_ID": "none", "WORLD_SIZE": "2", "LOCAL_WORLD_SIZE": "2",
                "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": "29500"}
    first = launch(tmp_path, "train", "--out", tmp_path / "run", RANK="0", LOCAL_RANK="0",
                   **torchrun)
    assert first.returncode == 2
    assert first.stderr.count("\n") == 1, first.stderr
    assert "started by torchrun (2 processes)" in first.stderr
    assert "mpirun -n 2" in first.stderr
    assert not (tmp_path / "run").exists()
    second = launch(tmp_path, "info", RANK="1", LOCAL_RANK="1", **torchrun)
    assert second.returncode == 2 and second.stderr == ""  # task 0 alone reports


def test_a_missing_mpi4py_under_a_launcher_is_one_line(tmp_path):
    fake = tmp_path / "no_mpi4py" / "mpi4py"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text("raise ImportError('No module named mpi4py')\n")
    result = launch(tmp_path, "info", PMI_RANK="0", PMI_SIZE="2",
                    PYTHONPATH=os.pathsep.join([str(fake.parent), REPO]))
    assert result.returncode == 2, result.stderr
    assert result.stderr.count("\n") == 1, result.stderr
    assert "mpi4py cannot be imported" in result.stderr and "NUMPY_DL_NO_MPI=1" in result.stderr


def test_threads_are_capped_at_the_cores(tmp_path):
    result = launch(tmp_path, "info", "--threads", "1000000000")
    assert result.returncode == 0, result.stderr
    cores = len(os.sched_getaffinity(0))
    assert f"{cores} thread{'s' * (cores != 1)} in this rank" in result.stdout
