"""launch/slurm.sbatch on a real single-node Slurm (Debian's slurm-wlm and munge, which
.ci/slurm/start.sh installs and starts): it trains with 2 ranks as shipped, and a job sent
SIGUSR1 (as Slurm does before the time limit) checkpoints, requeues itself and resumes to
exactly the run that was never interrupted. Srun without an MPI plugin is refused."""
import json
import os
import shutil
import subprocess
import sys
import time

import numpy as np
import pytest

from distributed_helpers import REPO, UNDER_MPI, subprocess_env
from numpy_dl import checkpoint


def slurm_skip_reason():
    if UNDER_MPI:
        return "submits Slurm jobs itself; the outer, single-process pytest runs it"
    if shutil.which("sbatch") is None:
        return "Slurm is not installed; .ci/slurm/start.sh installs and starts one"
    ping = subprocess.run(["scontrol", "ping"], capture_output=True, text=True)
    if "UP" not in ping.stdout:
        return "no Slurm controller answers; .ci/slurm/start.sh starts one"
    return None


pytestmark = [pytest.mark.skipif(slurm_skip_reason() is not None,
                                 reason=str(slurm_skip_reason())), pytest.mark.slow]

SCRIPT = os.path.join(REPO, "launch", "slurm.sbatch")
OPTIONS = ["--hidden-sizes", "64", "--latent-dim", "8", "--checkpoint-every", "5"]


def environment(run_dir):
    venv = os.path.dirname(os.path.dirname(sys.executable))
    return subprocess_env(NUMPY_DL_VENV=venv, NUMPY_DL_RUN_DIR=run_dir)


def submit(tmp_path, name, *args, wait=False):
    """Submit the recipe as is; returns its job id."""
    command = ["sbatch", "--parsable", f"--chdir={tmp_path}", *(["--wait"] if wait else []),
               SCRIPT, *OPTIONS, *map(str, args)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300,
                            env=environment(tmp_path / name))
    assert result.returncode == 0, result.stderr
    return result.stdout.strip().split(";")[0]


def job_state(job):
    out = subprocess.run(["scontrol", "show", "job", job], capture_output=True, text=True).stdout
    fields = dict(part.split("=", 1) for part in out.split() if "=" in part)
    return fields.get("JobState"), int(fields.get("Restarts", 0))


def wait_until(condition, seconds, what):
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


def final(run_dir):
    saved = checkpoint.load(checkpoint.latest(run_dir / "checkpoints"))
    records = [{k: v for k, v in json.loads(line).items() if k not in ("samples_per_s", "seconds")}
               for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return saved, records


def test_the_recipe_trains_with_two_ranks_as_shipped(tmp_path):
    job = submit(tmp_path, "run", "--epochs", "2", wait=True)
    log = (tmp_path / f"numpy_dl-{job}.out").read_text()
    assert "2 ranks (2 per node)" in log, log
    saved, records = final(tmp_path / "run")
    assert saved.metadata["world_size"] == 2 and [r["epoch"] for r in records] == [1, 2]


def test_a_signalled_job_requeues_and_resumes_exactly(tmp_path):
    epochs = "100"
    submit(tmp_path, "straight", "--epochs", epochs, wait=True)
    job = submit(tmp_path, "interrupted", "--epochs", epochs)
    metrics = tmp_path / "interrupted" / "metrics.jsonl"
    wait_until(lambda: metrics.exists() and metrics.read_text(), 120, "training to start")
    subprocess.run(["scancel", "--signal=USR1", job], check=True)
    wait_until(lambda: job_state(job) == ("PENDING", 1), 120, "the job to requeue itself")
    subprocess.run(["scontrol", "update", f"jobid={job}", "StartTime=now"], check=True)
    wait_until(lambda: job_state(job)[0] in ("COMPLETED", None), 300, "the requeued job")
    log = (tmp_path / f"numpy_dl-{job}.out").read_text()
    assert "numpy_dl: stopped: SIGUSR1 received" in log and "requeueing" in log, log
    assert "samples into epoch" in log or "resuming from" in log, log
    (expected, expected_records), (got, got_records) = (final(tmp_path / "straight"),
                                                        final(tmp_path / "interrupted"))
    assert got_records == expected_records
    assert got.model_state.keys() == expected.model_state.keys()
    assert all(np.array_equal(got.model_state[k], expected.model_state[k])
               for k in expected.model_state)


def test_srun_without_an_mpi_plugin_is_refused_with_one_line(tmp_path):
    result = subprocess.run(["srun", "--mpi=none", "-n", "2", sys.executable, "-m",
                             "numpy_dl.launch", "train", "--out", str(tmp_path / "run")],
                            capture_output=True, text=True, timeout=120, cwd=REPO,
                            env=subprocess_env())
    assert result.returncode == 2, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.startswith("numpy_dl:")]
    assert len(lines) == 1 and "did not form one MPI job" in lines[0], result.stderr
    assert not (tmp_path / "run").exists()
