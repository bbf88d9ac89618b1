"""`python -m numpy_dl.launch` under real `mpirun -n 2` and `-n 4`: the same global batch
gives the same run whatever the rank count, `--resume auto` continues exactly, the
commands work from an MPI run's checkpoint, and errors are one line from rank 0."""
import json
import sys

import numpy as np
import pytest

from distributed_helpers import (error_lines, mpirun_command, needs_mpirun, output_of, run,
                                 run_script)
from launch_helpers import csv_matches_jsonl, png_size, tensorboard_events

pytestmark = needs_mpirun

TIMEOUT = 120
# The global batch is 64 in every run below; noise exercises the per-global-batch draws,
# and a replica check every 7 steps that the ranks stay identical.
TRAIN = ["train", "--hidden-sizes", "64", "--latent-dim", "8", "--noise-std", "0.1",
         "--replica-check-every", "7"]


def launch(*argv, ranks=None):
    """Run `python -m numpy_dl.launch ARGV`, under `mpirun -n ranks` when given."""
    command = [sys.executable, "-m", "numpy_dl.launch", *map(str, argv)]
    if ranks is not None:
        command = [*mpirun_command(ranks), *command]
    return run(command, TIMEOUT)[0]


def succeeded(result):
    assert result.returncode == 0, output_of(result)
    return result


def metrics(run_dir):
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Digits trained with a global batch of 64 as 1 x 64, 2 x 32 and 4 x 16; the 2-rank
    run stops after 2 epochs and is resumed to 3."""
    root = tmp_path_factory.mktemp("mpi_runs")
    logs = {
        "one": succeeded(launch(*TRAIN, "--epochs", "2", "--batch-size", "64",
                                "--out", root / "one")),
        "two": succeeded(launch(*TRAIN, "--epochs", "2", "--batch-size", "32",
                                "--out", root / "two", ranks=2)),
        "four": succeeded(launch(*TRAIN, "--epochs", "3", "--batch-size", "16",
                                 "--out", root / "four", ranks=4)),
    }
    logs["two resumed"] = succeeded(launch(*TRAIN, "--epochs", "3", "--batch-size", "32",
                                           "--out", root / "two", "--resume", "auto", ranks=2))
    return root, logs


def test_the_same_global_batch_gives_the_same_run_at_any_rank_count(runs):
    root, _ = runs
    one, two, four = (metrics(root / name) for name in ("one", "two", "four"))
    for key in ("val_loss", "val_recon", "val_kl", "train_loss"):
        np.testing.assert_allclose([r[key] for r in two[:2]], [r[key] for r in one], rtol=1e-5,
                                   err_msg=key)
        np.testing.assert_allclose([r[key] for r in four[:2]], [r[key] for r in one], rtol=1e-5,
                                   err_msg=key)


def test_resume_auto_continues_from_the_last_epoch(runs):
    root, logs = runs
    out = logs["two resumed"].stdout
    assert "resuming from " in out and "checkpoint-000000050.npz after epoch 2" in out
    assert [line.split()[1] for line in out.splitlines() if line.startswith("epoch ")] == ["3/3"]
    resumed, uninterrupted = metrics(root / "two"), metrics(root / "four")
    assert [r["epoch"] for r in resumed] == [1, 2, 3]
    np.testing.assert_allclose(resumed[2]["val_loss"], uninterrupted[2]["val_loss"], rtol=1e-5)


def test_rank_0_alone_prints(runs):
    _, logs = runs
    for name in ("two", "four"):
        lines = logs[name].stdout.splitlines()
        assert sum(line.startswith("numpy_dl ") for line in lines) == 1, logs[name].stdout
        assert sum(line.startswith("epoch 1/") for line in lines) == 1
        assert logs[name].stderr == ""
    assert "4 ranks (4 per node), 1 BLAS thread per rank, global batch 64 (4 x 16)" in \
        logs["four"].stdout


def test_each_rank_logs_to_its_own_file_and_metrics_csv_follows_a_resume(runs):
    root, _ = runs
    run = root / "two"
    assert csv_matches_jsonl(run)
    assert [row.split(",")[0] for row in (run / "metrics.csv").read_text().splitlines()] == \
        ["epoch", "1", "2", "3"]
    assert sorted((run / "logs").iterdir()) == [run / "logs" / "rank-0.log",
                                               run / "logs" / "rank-1.log"]
    zero, one = ((run / "logs" / f"rank-{r}.log").read_text().splitlines() for r in (0, 1))
    for rank, log in enumerate((zero, one)):  # one start line per run: the first, the resume
        starts = [line for line in log if line.startswith("--- numpy_dl ")]
        assert len(starts) == 2 and all(f"rank {rank} of 2" in line for line in starts)
    assert [line.split()[1] for line in zero if line.startswith("epoch ")] == ["1/2", "2/2",
                                                                               "3/3"]
    assert len(one) == 2  # rank 1 said nothing but its start lines


def test_a_warning_on_rank_1_reaches_its_log_and_rank_0_writes_tensorboard(tmp_path):
    run = tmp_path / "run"
    result, _ = run_script("warn_on_rank.py", "train", "--hidden-sizes", "16", "--latent-dim",
                           "2", "--epochs", "2", "--images-every", "1", "--tensorboard",
                           "--quiet", "--out", run, ranks=2, timeout=TIMEOUT)
    assert result.returncode == 0, output_of(result)
    assert result.stdout == ""
    assert result.stderr == "[rank 1] warning: rank 1 saw something odd (UserWarning)\n"
    zero, one = ((run / "logs" / f"rank-{r}.log").read_text() for r in (0, 1))
    assert one.splitlines()[1:] == ["[rank 1] warning: rank 1 saw something odd (UserWarning)"]
    assert "something odd" not in zero and "epoch 2/2  train " in zero  # quiet, yet logged
    assert csv_matches_jsonl(run)
    assert len(list((run / "tensorboard").iterdir())) == 1  # rank 0's alone
    events = tensorboard_events(run / "tensorboard")
    assert [epoch for epoch, _ in events["val/loss"]] == [1, 2]
    assert [epoch for epoch, _ in events["samples"]] == [1, 2]


def test_commands_from_an_mpi_checkpoint_under_mpirun(runs, tmp_path):
    root, _ = runs
    checkpoint = root / "two"
    succeeded(launch("sample", "--checkpoint", checkpoint, "--out", tmp_path, ranks=2))
    assert png_size(tmp_path / "samples.png") == (274, 274)
    assert np.load(tmp_path / "samples.npy").shape == (64, 1, 8, 8)
    result = succeeded(launch("reconstruct", "--checkpoint", checkpoint, "--split", "val",
                              "--out", tmp_path, ranks=2))
    assert "over 180 samples" in result.stdout
    assert png_size(tmp_path / "reconstructions.png") == (274, 138)
    succeeded(launch("interpolate", "--checkpoint", checkpoint, "--random", "--steps", "7",
                     "--out", tmp_path, ranks=2))
    assert png_size(tmp_path / "interpolation.png") == (7 * 34 + 2, 36)
    for ranks, out in ((4, tmp_path / "four"), (None, tmp_path / "one")):
        succeeded(launch("encode", "--checkpoint", checkpoint, "--out", out, ranks=ranks))
        succeeded(launch("score", "--checkpoint", checkpoint, "--out", out, ranks=ranks))
    # Shared out over 4 ranks, each sample is done once and lands in its place.
    four, one = (np.load(tmp_path / name / "latents.npy") for name in ("four", "one"))
    assert four.shape == (1797, 8)
    np.testing.assert_allclose(four, one, rtol=1e-4, atol=1e-6)
    scores = [(tmp_path / n / "scores.csv").read_text().splitlines() for n in ("four", "one")]
    assert len(scores[0]) == 1798 and [r.split(",")[:2] for r in scores[0]] == \
        [r.split(",")[:2] for r in scores[1]]


def test_info_under_mpirun():
    out = succeeded(launch("info", ranks=2)).stdout
    assert "world size: 2" in out and "ranks per node: 2" in out
    assert "MPI standard" in out and "1 thread in this rank" in out


def one_error_line(result):
    """One numpy_dl line from rank 0 alone, no traceback (the launcher's own lines, which
    Open MPI adds after a failed rank, are not counted)."""
    return len(error_lines(result.stderr)) == 1 and "Traceback" not in result.stderr


def test_errors_under_mpirun_are_one_line_from_rank_0(runs):
    root, _ = runs
    result = launch("train", "--model", "gan", ranks=2)
    assert result.returncode == 2 and one_error_line(result), output_of(result)
    assert error_lines(result.stderr)[0].startswith("numpy_dl: error: --model: expected one of")
    before = sorted(p.name for p in (root / "two" / "checkpoints").iterdir())
    result = launch("train", "--out", root / "two", ranks=2)
    assert result.returncode == 2 and one_error_line(result), output_of(result)
    assert "is not empty" in result.stderr
    assert sorted(p.name for p in (root / "two" / "checkpoints").iterdir()) == before
