"""A training job under real faults: SIGTERM, SIGUSR1 and SIGINT sent to `mpirun` at a
seeded random moment, and SIGKILL of a random rank. Each trial checks the exit code and
how fast the job ended, that no checkpoint is damaged and metrics.jsonl has no gap or
double, and that `--resume auto` then finishes bitwise equal to a run never interrupted.

`tests/fault_campaign.py` runs the same trials many times over (the numbers in the
README); here a few seeded ones keep the suite quick."""
import json
import os
import random
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from distributed_helpers import REPO, mpirun_command, needs_mpirun, output_of, run, subprocess_env
from numpy_dl import checkpoint

pytestmark = [needs_mpirun, pytest.mark.slow]

TRAIN = ["train", "--hidden-sizes", "64", "--latent-dim", "8", "--noise-std", "0.1",
         "--global-batch-size", "64", "--checkpoint-every", "3", "--checkpoint-every-steps", "10",
         "--keep", "2"]
EPOCHS = 40
STOPPED = 75


def command(ranks, out, *extra):
    return [*mpirun_command(ranks), sys.executable, "-m", "numpy_dl.launch", *TRAIN,
            "--epochs", str(EPOCHS), "--out", str(out), *map(str, extra)]


def final_state(out):
    """The last checkpoint's model and optimizer arrays, and the metrics without timings."""
    saved = checkpoint.load(checkpoint.latest(out / "checkpoints"))
    arrays = {**{f"m/{k}": v for k, v in saved.model_state.items()},
              **{f"o/{i}/{k}": np.asarray(v) for i, entry in saved.optimizer_state["state"].items()
                 for k, v in entry.items()}}
    return arrays, metrics(out)


def metrics(out):
    lines = (out / "metrics.jsonl").read_text().splitlines()
    return [{k: v for k, v in json.loads(line).items() if k not in ("samples_per_s", "seconds")}
            for line in lines]


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """Uninterrupted runs at 2 and 4 ranks (the same global batch)."""
    root = tmp_path_factory.mktemp("reference")
    states = {}
    for ranks in (2, 4):
        result, _ = run(command(ranks, root / f"n{ranks}"), timeout=300)
        assert result.returncode == 0, output_of(result)
        states[ranks] = final_state(root / f"n{ranks}")
    return states


def interrupt(ranks, out, how, seed):
    """Start the job, wait until it is training, then after a seeded random delay send
    `how` (a signal name for mpirun, or "SIGKILL" to one random rank). Returns (exit
    code, seconds from the fault to the exit, stderr)."""
    rng = random.Random(seed)
    job = subprocess.Popen(command(ranks, out), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           text=True, env=subprocess_env(), cwd=REPO)
    deadline = time.monotonic() + 120
    while not (out / "metrics.jsonl").exists() or not (out / "metrics.jsonl").read_text():
        assert time.monotonic() < deadline and job.poll() is None, job.communicate()
        time.sleep(0.02)
    time.sleep(rng.uniform(0.0, 1.0))
    if how == "SIGKILL":
        ranks_pids = subprocess.run(["pgrep", "-f", f"numpy_dl.launch .*--out {out}$"],
                                    capture_output=True, text=True).stdout.split()
        ranks_pids = [pid for pid in ranks_pids if int(pid) != job.pid]
        os.kill(int(rng.choice(sorted(ranks_pids))), signal.SIGKILL)
    else:
        job.send_signal(getattr(signal, how))
    sent = time.monotonic()
    try:
        _, err = job.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        job.kill()
        pytest.fail(f"{how}: the job hung")
    return job.returncode, time.monotonic() - sent, err


def check_and_resume(ranks, out, reference):
    """No damaged checkpoint, then --resume auto to the end, bitwise the reference."""
    for name in os.listdir(out / "checkpoints"):
        if name.endswith(".npz"):
            checkpoint.load(out / "checkpoints" / name)  # raises if damaged
    result, _ = run(command(ranks, out, "--resume", "auto"), timeout=300)
    assert result.returncode == 0, output_of(result)
    arrays, records = final_state(out)
    expected_arrays, expected_records = reference[ranks]
    assert [r["epoch"] for r in records] == list(range(1, EPOCHS + 1))
    assert records == expected_records
    assert arrays.keys() == expected_arrays.keys()
    assert all(np.array_equal(arrays[k], expected_arrays[k]) for k in arrays)


@pytest.mark.parametrize("how, ranks, seed", [("SIGTERM", 2, 1), ("SIGUSR1", 2, 2),
                                              ("SIGINT", 4, 3)])
def test_a_signal_checkpoints_the_step_exits_75_and_resumes_exactly(tmp_path, reference, how,
                                                                    ranks, seed):
    code, seconds, err = interrupt(ranks, tmp_path / "run", how, seed)
    assert code == STOPPED, err
    assert seconds < 10
    stopped = [line for line in err.splitlines() if "numpy_dl: stopped:" in line]
    assert len(stopped) == 1 and f"{how} received: stopped at step" in stopped[0], err
    step = int(stopped[0].split("stopped at step ")[1].split()[0])
    assert checkpoint.load(checkpoint.latest(tmp_path / "run" / "checkpoints")).step == step
    check_and_resume(ranks, tmp_path / "run", reference)


@pytest.mark.parametrize("ranks, seed", [(2, 4), (4, 5)])
def test_a_killed_rank_ends_the_job_and_the_run_resumes_exactly(tmp_path, reference, ranks,
                                                                seed):
    code, seconds, err = interrupt(ranks, tmp_path / "run", "SIGKILL", seed)
    assert code != 0 and seconds < 30, err
    check_and_resume(ranks, tmp_path / "run", reference)
