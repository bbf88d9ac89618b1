"""`train --deterministic` under real `mpirun`: the VAE and the ConvVAE, 200 steps each,
give byte-identical checkpoint arrays (model and optimizer) and metrics at -n 1, 2, 4 and
8 (oversubscribed),
and a run killed mid-epoch at -n 4 resumes at -n 2 to exactly the uninterrupted -n 1 run."""
import json
import sys

import numpy as np
import pytest

from distributed_helpers import error_lines, mpirun_command, needs_mpirun, output_of, run
from numpy_dl import checkpoint
from test_launch_faults import interrupt

pytestmark = [needs_mpirun, pytest.mark.slow]

COMMON = ["--deterministic", "--global-batch-size", "64", "--micro-batches", "8",
          "--noise-std", "0.1", "--checkpoint-every", "2"]
RUNS = {"vae": ["--model", "vae", "--hidden-sizes", "64", "--latent-dim", "8", "--epochs", "8"],
        "conv-vae": ["--model", "conv-vae", "--base-channels", "4", "--latent-dim", "4",
                     "--epochs", "8"]}


def train(ranks, out, *extra):
    command = [*mpirun_command(ranks), sys.executable, "-m", "numpy_dl.launch",
               "train", *COMMON, "--out", str(out), *map(str, extra)]
    result, _ = run(command, timeout=300)
    assert result.returncode == 0, output_of(result)


def contents(out):
    """The final checkpoint's arrays and the metrics without timings."""
    saved = checkpoint.load(checkpoint.latest(out / "checkpoints"))
    arrays = {**saved.model_state, **{f"{i}/{k}": np.asarray(v)
                                      for i, e in saved.optimizer_state["state"].items()
                                      for k, v in e.items()}}
    records = [{k: v for k, v in json.loads(line).items() if k not in ("samples_per_s", "seconds")}
               for line in (out / "metrics.jsonl").read_text().splitlines()]
    return arrays, records, saved.step


def same(a, b):
    (arrays_a, records_a, step_a), (arrays_b, records_b, step_b) = a, b
    assert step_a == step_b and records_a == records_b
    assert arrays_a.keys() == arrays_b.keys()
    assert all(arrays_a[k].tobytes() == arrays_b[k].tobytes() for k in arrays_a)


@pytest.fixture(scope="module")
def one_rank(tmp_path_factory):
    root = tmp_path_factory.mktemp("deterministic")
    for name, options in RUNS.items():
        train(1, root / name, *options)
    return root


@pytest.mark.parametrize("name, ranks", [("vae", 2), ("vae", 4), ("vae", 8), ("conv-vae", 2),
                                         ("conv-vae", 4), ("conv-vae", 8)])
def test_every_rank_count_gives_the_same_bytes(one_rank, tmp_path, name, ranks):
    train(ranks, tmp_path / name, *RUNS[name])
    same(contents(tmp_path / name), contents(one_rank / name))


def test_a_run_killed_at_four_ranks_resumes_at_two_to_the_one_rank_bytes(one_rank, tmp_path,
                                                                          monkeypatch):
    import test_launch_faults
    out = tmp_path / "run"
    monkeypatch.setattr(test_launch_faults, "TRAIN", ["train", *COMMON, *RUNS["vae"][:-2],
                                                      "--checkpoint-every-steps", "5"])
    monkeypatch.setattr(test_launch_faults, "EPOCHS", 8)
    code, _, err = interrupt(4, out, "SIGKILL", seed=7)
    assert code != 0, err
    resumed = checkpoint.load(checkpoint.latest(out / "checkpoints"))
    assert resumed.metadata["world_size"] == 4
    train(2, out, *RUNS["vae"], "--resume", "auto")
    same(contents(out), contents(one_rank / "vae"))


def test_a_default_mode_run_resumes_at_another_rank_count_with_a_note(tmp_path):
    out = tmp_path / "run"
    command = [*mpirun_command(2), sys.executable, "-m", "numpy_dl.launch", "train",
               "--global-batch-size", "64", "--epochs", "1", "--out", str(out)]
    result, _ = run(command, timeout=120)
    assert result.returncode == 0, output_of(result)
    result, _ = run([sys.executable, "-m", "numpy_dl.launch", "train", "--out", str(out),
                     "--resume", "auto", "--epochs", "2"], timeout=120)
    assert result.returncode == 0, output_of(result)
    notes = [line for line in result.stderr.splitlines() if "bits will differ" in line]
    assert len(notes) == 1 and "written by 2 ranks and resumes on 1" in notes[0], result.stderr


@pytest.mark.parametrize("ranks, batch, message", [
    (3, 48, "divides micro_batches=8 \\(1, 2, 4, 8\\); got 3 ranks"),
    (1, 30, "a global batch of 30 cannot be cut into 8 equal micro-batches"),
])
def test_unsupported_rank_counts_and_batches_are_one_line(tmp_path, ranks, batch, message):
    import re
    command = [*mpirun_command(ranks), sys.executable, "-m", "numpy_dl.launch",
               "train", "--deterministic", "--global-batch-size", str(batch),
               "--out", str(tmp_path / "run")]
    result, _ = run(command, timeout=120)
    lines = error_lines(result.stderr)
    assert result.returncode == 2 and len(lines) == 1, output_of(result)
    assert re.search(message, lines[0]) and not (tmp_path / "run").exists()
