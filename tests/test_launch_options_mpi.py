"""`train`'s step and validation options, `evaluate` and `numpy_dl.launch.train()` under
real `mpirun -n 2` (and 3): the default global batch is the same run at any rank count,
accumulation, fp16 compression and clipping act on the averaged gradient, overlap changes
no bits at two ranks, deterministic
mode keeps clipping, warm-up, validation every N epochs and early stopping bitwise across
rank counts, evaluate gives one process's bytes, and the Python function works on every
rank."""
import json
import sys

import numpy as np
import pytest

import numpy_dl.launch
from distributed_helpers import error_lines, mpirun_command, needs_mpirun, output_of, run, \
    run_script
from numpy_dl import checkpoint
from test_launch_options import SMALL, WHOLE, arrays, final, records, same_bytes, timeless

pytestmark = needs_mpirun

TIMEOUT = 120


def launch(*argv, ranks=None):
    """`python -m numpy_dl.launch ARGV`, under `mpirun -n ranks` when given."""
    command = [sys.executable, "-m", "numpy_dl.launch", *map(str, argv)]
    return run([*mpirun_command(ranks), *command] if ranks else command, TIMEOUT)[0]


def succeeded(result):
    assert result.returncode == 0, output_of(result)
    return result.stdout


def test_the_default_run_is_the_same_at_any_rank_count(tmp_path):
    """No batch option: a global batch of 32 at 1 rank, and at 2 ranks in 2 passes of 8
    each: the same steps, the same losses (up to float rounding)."""
    one = succeeded(launch("train", *SMALL, "--epochs", "2", "--out", tmp_path / "one"))
    two = succeeded(launch("train", *SMALL, "--epochs", "2", "--accumulate", "2",
                           "--out", tmp_path / "two", ranks=2))
    assert "global batch 32 (1 x 32)" in one and "global batch 32 (2 x 2 passes x 8)" in two
    a, b = records(tmp_path / "one"), records(tmp_path / "two")
    assert [r["step"] for r in a] == [r["step"] for r in b] == [5, 10]
    for key in ("train_loss", "val_loss", "val_recon", "val_kl"):
        np.testing.assert_allclose([r[key] for r in b], [r[key] for r in a], rtol=1e-5,
                                   err_msg=key)
    result = launch("train", *SMALL, "--out", tmp_path / "three", ranks=3)
    lines = error_lines(result.stderr)
    assert result.returncode == 2 and len(lines) == 1, output_of(result)
    assert "the default global batch of 32 cannot be shared equally by 3 ranks" in lines[0]
    assert not (tmp_path / "three").exists()


def test_compressed_accumulated_gradients_are_clipped_after_averaging(tmp_path):
    """One SGD update at lr 1 from 2 ranks x 3 passes, rounded to float16 on the way: the
    parameters move by the clipped norm, identically on both ranks."""
    out = tmp_path / "run"
    succeeded(launch("train", *SMALL, *WHOLE, "--accumulate", "3", "--compression", "fp16",
                     "--optimizer", "sgd", "--momentum", "0", "--lr", "1",
                     "--clip-grad-norm", "0.01", "--replica-check-every", "1",
                     "--epochs", "1", "--out", out, ranks=2))
    before, after = (arrays(out / "checkpoints" / f"checkpoint-{s:09d}.npz") for s in (0, 1))
    moved = np.sqrt(sum(np.sum((after[k].astype(np.float64) - before[k]) ** 2)
                        for k in before if k.startswith("model/")))
    assert moved == pytest.approx(0.01, rel=1e-3)


def test_overlap_on_two_ranks_trains_the_bits_of_overlap_off(tmp_path):
    """--overlap on all-reduces buckets of 0.01 MiB (several per model) while backward
    runs, with fp16 compression and accumulation too; two ranks sum each element in one
    addition either way, so the runs are bitwise the same."""
    runs = {}
    for overlap in ("on", "off"):
        runs[overlap] = tmp_path / overlap
        succeeded(launch("train", *SMALL, "--epochs", "2", "--accumulate", "2",
                         "--compression", "fp16", "--overlap", overlap, "--bucket-mb", "0.01",
                         "--out", runs[overlap], ranks=2))
    assert same_bytes(final(runs["on"]), final(runs["off"]))
    assert timeless(runs["on"]) == timeless(runs["off"])


DETERMINISTIC = ["--deterministic", "--micro-batches", "2", "--clip-grad-norm", "20",
                 "--warmup-steps", "5", "--validate-every", "2", "--early-stopping", "1",
                 "--lr", "0.05", "--epochs", "40"]


@pytest.fixture(scope="module")
def deterministic(tmp_path_factory):
    root = tmp_path_factory.mktemp("deterministic")
    outputs = {ranks: succeeded(launch("train", *SMALL, *DETERMINISTIC, "--out", root / str(ranks),
                                       ranks=ranks))
               for ranks in (1, 2)}
    return root, outputs


def test_deterministic_mode_keeps_its_bits_with_clipping_warm_up_and_early_stopping(
        deterministic):
    root, outputs = deterministic
    assert all("early stopping: the validation loss has not improved for 1 validation"
               in out for out in outputs.values())
    one, two = root / "1", root / "2"
    assert timeless(one) == timeless(two) and len(records(one)) < 40
    assert [r["epoch"] for r in records(one) if "val_loss" in r] == \
        list(range(2, len(records(one)) + 1, 2))
    assert same_bytes(final(one), final(two))
    assert same_bytes(arrays(one / "checkpoints" / "best.npz"),
                      arrays(two / "checkpoints" / "best.npz"))


def test_evaluate_under_mpirun_gives_the_bytes_of_one_process(deterministic, tmp_path):
    root, _ = deterministic
    for ranks in (None, 2, 3):
        succeeded(launch("evaluate", "--checkpoint", root / "1", "--split", "val",
                         "--batch-size", "100", "--out", tmp_path / str(ranks), ranks=ranks))
    one, *others = ((tmp_path / str(r) / name).read_bytes() for r in (None, 2, 3)
                    for name in ("evaluation.csv", "evaluation.json"))
    csv_one, json_one, csv_two, json_two, csv_three, json_three = one, *others
    assert csv_one == csv_two == csv_three and json_one == json_two == json_three
    assert len(csv_one.decode().splitlines()) == 1 + 1617
    summary = json.loads(json_one)
    best = checkpoint.load(checkpoint.latest(root / "1" / "checkpoints"))
    assert summary["step"] == best.step and summary["split"] == "val"


def test_the_python_function_under_mpirun(tmp_path):
    result, _ = run_script("train_function.py", tmp_path / "run", ranks=2, timeout=TIMEOUT)
    assert result.returncode == 0, output_of(result)
    every = json.loads(result.stdout.splitlines()[-1])
    for got in every:  # the same result on both ranks (each timed its own epochs)
        for timing in ("samples_per_s", "seconds"):
            del got[0][timing]
    assert every[0] == every[1]
    metrics, run_dir, refused = every[0]
    assert run_dir == str(tmp_path / "run") and metrics == timeless(tmp_path / "run")[-1]
    assert refused[0] == "UsageError" and refused[2] == 2
    assert refused[1].startswith("--global-batch-size 33 cannot be shared equally by 2 ranks")
    assert not (tmp_path / "run-refused").exists()
    alone = numpy_dl.launch.train(hidden_sizes=[32], latent_dim=4, val_fraction=0.9,
                                  noise_std=0.1, epochs=2, out=str(tmp_path / "alone"))
    np.testing.assert_allclose(metrics["val_loss"], alone.metrics["val_loss"], rtol=1e-5)
