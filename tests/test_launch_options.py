"""`train`'s step and validation options in this process: --accumulate takes the step of
the whole global batch and resumes exactly, --clip-grad-norm clips the averaged gradient,
the warm-up scales the scheduled rate, --compression fp16 rounds, --validate-every,
checkpoints/best.npz, --early-stopping (across a resume), what a resume may change, what
--deterministic refuses, the default global batch, the `evaluate` command and the Python
function `numpy_dl.launch.train`. (test_launch_options_mpi.py runs them under mpirun.)"""
import contextlib
import csv
import io
import json
import os
import shutil
import warnings

import numpy as np
import pytest

import numpy_dl.launch
from distributed_helpers import UNDER_MPI
from launch_helpers import one_line_error, snapshot
from numpy_dl import checkpoint
from numpy_dl.data import datasets
from numpy_dl.launch import config as options
from numpy_dl.launch.cli import main
from numpy_dl.launch.errors import UsageError
from numpy_dl.launch.train import global_batch, local_batch

pytestmark = pytest.mark.skipif(UNDER_MPI, reason="trains in this process as a world of one")

# 180 training digits, the default global batch of 32: 5 steps per epoch.
SMALL = ["--val-fraction", "0.9", "--hidden-sizes", "32", "--latent-dim", "4",
         "--noise-std", "0.1"]
WHOLE = ["--global-batch-size", "180"]  # all 180 training digits: one step per epoch


def records(run):
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def timeless(run):
    return [{k: v for k, v in r.items() if k not in ("samples_per_s", "seconds")}
            for r in records(run)]


def arrays(path):
    saved = checkpoint.load(path)
    return {**{f"model/{k}": v for k, v in saved.model_state.items()},
            **{f"{i}/{k}": np.asarray(v) for i, entry in saved.optimizer_state["state"].items()
               for k, v in entry.items()}}


def final(run):
    return arrays(checkpoint.latest(run / "checkpoints"))


def same_bytes(a, b):
    return a.keys() == b.keys() and all(a[k].tobytes() == b[k].tobytes() for k in a)


def train(launch, out, *argv):
    code, stdout, err = launch("train", *SMALL, *argv, "--out", out)
    assert code == 0, err
    return stdout


# ---------------------------------------------------------------- the default global batch

def test_the_default_is_a_global_batch_of_32_and_batch_size_is_per_rank():
    config = options.resolve()
    assert (config.batch_size, config.global_batch_size) == (None, None)
    assert [(global_batch(config, n), local_batch(config, n)) for n in (1, 2, 8)] == \
        [(32, 32), (32, 16), (32, 4)]
    per_rank = options.resolve((None, {"batch_size": "16"}))
    assert [global_batch(per_rank, n) for n in (1, 2, 8)] == [16, 32, 128]
    with pytest.raises(UsageError, match=r"^the default global batch of 32 cannot be shared "
                                         r"equally by 3 ranks; give a --global-batch-size "
                                         r"that is a multiple of 3, or a --batch-size"):
        local_batch(config, 3)


def test_a_layer_giving_either_batch_option_replaces_both_below_it():
    """The command line's --batch-size over a config file's global-batch-size (or the
    other way round) means the command line's; given together, the global batch wins."""
    file = ("config file", {"global_batch_size": 64})
    assert global_batch(options.resolve(file, (None, {"batch_size": "16"})), 2) == 32
    assert global_batch(options.resolve(("file", {"batch_size": 16}),
                                        (None, {"global_batch_size": "64"})), 2) == 64
    both = options.resolve(("old config.toml", {"batch_size": 32, "global_batch_size": 64}))
    assert global_batch(both, 4) == 64


# ---------------------------------------------------------------- accumulation

@pytest.fixture(scope="module")
def accumulated(tmp_path_factory):
    """3 epochs of the default global batch in 1 pass and in 4 passes, with a checkpoint
    every 3 steps."""
    root = tmp_path_factory.mktemp("accumulate")
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(warnings, "showwarning", warnings.showwarning)
        for passes in (1, 4):
            assert main(["train", *SMALL, "--epochs", "3", "--accumulate", str(passes),
                         "--checkpoint-every-steps", "3", "--keep", "100",
                         "--out", str(root / str(passes))]) == 0
    return root


def test_accumulated_passes_take_the_step_of_the_whole_global_batch(accumulated):
    one, four = final(accumulated / "1"), final(accumulated / "4")
    assert one.keys() == four.keys() and not same_bytes(one, four)  # summed in other orders
    for key in one:
        np.testing.assert_allclose(four[key], one[key], rtol=1e-4, atol=1e-6, err_msg=key)
    for a, b in zip(timeless(accumulated / "1"), timeless(accumulated / "4")):
        assert a.keys() == b.keys() and a["step"] == b["step"]
        np.testing.assert_allclose([b[k] for k in sorted(b)], [a[k] for k in sorted(a)],
                                   rtol=1e-5)


@pytest.mark.parametrize("step", [3, 6, 12])
def test_an_accumulating_run_resumes_from_its_step_checkpoints_bitwise(launch, accumulated,
                                                                       tmp_path, step):
    """Steps and checkpoints count whole global batches: a checkpoint never falls inside
    an accumulation, and the run goes on exactly."""
    straight = accumulated / "4"
    saved = checkpoint.load(straight / "checkpoints" / f"checkpoint-{step:09d}.npz")
    assert saved.data_position["sample"] == (step % 5) * 32
    code, _, err = launch("train", "--resume", saved.path, "--out", tmp_path / "branch")
    assert code == 0, err
    assert same_bytes(final(tmp_path / "branch"), final(straight))
    assert timeless(tmp_path / "branch") == [r for r in timeless(straight)
                                             if r["step"] > step - step % 5]


def test_the_header_shows_the_passes_and_batch_size_stays_per_pass(launch, tmp_path):
    out = train(launch, tmp_path / "run", "--batch-size", "8", "--accumulate", "2",
                "--epochs", "1")
    assert "global batch 16 (1 x 2 passes x 8)" in out


# ---------------------------------------------------------------- clipping, warm-up, fp16

def test_clipping_bounds_each_update_by_the_norm_of_the_averaged_gradient(launch, tmp_path):
    """With plain SGD at lr 1, one update moves the parameters by the clipped gradient: a
    step of norm 0.01 exactly (clip_grad_norm_'s 1e-6 aside)."""
    out = tmp_path / "run"
    train(launch, out, *WHOLE, "--optimizer", "sgd", "--momentum", "0", "--lr", "1",
          "--clip-grad-norm", "0.01", "--epochs", "1")
    before, after = (arrays(out / "checkpoints" / f"checkpoint-{s:09d}.npz") for s in (0, 1))
    moved = np.sqrt(sum(np.sum((after[k].astype(np.float64) - before[k]) ** 2)
                        for k in before if k.startswith("model/")))
    assert moved == pytest.approx(0.01, rel=1e-3)


def test_a_clip_above_the_gradient_norm_changes_nothing(launch, accumulated, tmp_path):
    train(launch, tmp_path / "run", "--epochs", "3", "--clip-grad-norm", "1e9")
    assert same_bytes(final(tmp_path / "run"), final(accumulated / "1"))


def test_warm_up_scales_the_scheduled_rate_of_each_update(launch, tmp_path):
    """The first update of a 4-step warm-up is the update at lr / 4 (bitwise: the factor is
    a power of two here); the rates recorded follow (k + 1) / W times the step schedule;
    and a run resumed in the middle of the warm-up ends with the same bytes."""
    train(launch, tmp_path / "warm", *WHOLE, "--warmup-steps", "4", "--epochs", "1")
    train(launch, tmp_path / "slow", *WHOLE, "--lr", str(0.003 / 4), "--epochs", "1")
    assert same_bytes(final(tmp_path / "warm"), final(tmp_path / "slow"))
    schedule = ["--warmup-epochs", "2", "--lr-schedule", "step", "--lr-step", "1",
                "--checkpoint-every", "1", "--epochs", "3"]
    train(launch, tmp_path / "straight", *schedule)
    assert [r["lr"] for r in records(tmp_path / "straight")] == pytest.approx(
        [0.003 * 1 / 10, 0.0015 * 6 / 10, 0.00075])
    first = tmp_path / "straight" / "checkpoints" / "checkpoint-000000005.npz"
    code, _, err = launch("train", "--resume", first, "--out", tmp_path / "resumed")
    assert code == 0, err
    assert same_bytes(final(tmp_path / "resumed"), final(tmp_path / "straight"))


def test_fp16_compression_rounds_the_gradients(launch, accumulated, tmp_path):
    train(launch, tmp_path / "run", "--epochs", "3", "--compression", "fp16")
    rounded, exact = final(tmp_path / "run"), final(accumulated / "1")
    assert not same_bytes(rounded, exact)
    for key in exact:
        np.testing.assert_allclose(rounded[key], exact[key], atol=1e-3, err_msg=key)


# ---------------------------------------------------------------- validation, best, stopping

def test_validation_every_n_epochs_and_the_best_checkpoint_outside_the_rotation(launch,
                                                                                tmp_path):
    run = tmp_path / "run"
    train(launch, run, "--epochs", "5", "--validate-every", "2", "--keep", "1")
    metrics = records(run)
    assert [r["epoch"] for r in metrics if "val_loss" in r] == [2, 4, 5]  # and the last
    assert sorted(os.listdir(run / "checkpoints")) == ["best.npz", "checkpoint-000000025.npz",
                                                     "latest"]
    best = checkpoint.load(run / "checkpoints" / "best.npz")
    lowest = min((r for r in metrics if "val_loss" in r), key=lambda r: r["val_loss"])
    assert (best.epoch, best.step) == (lowest["epoch"], lowest["step"])
    assert best.data_position["validations"] == {
        "best_loss": lowest["val_loss"], "best_epoch": lowest["epoch"], "stale": 0}
    # The commands take it, and write into its run's directory.
    code, out, err = launch("evaluate", "--checkpoint", run / "checkpoints" / "best.npz",
                            "--split", "val")
    assert code == 0, err
    summary = json.loads((run / "evaluate" / "evaluation.json").read_text())
    assert summary["epoch"] == lowest["epoch"] and summary["samples"] == 1617
    # the same numbers up to float32 rounding (validation ran in other batches)
    assert summary["loss"] == pytest.approx(lowest["val_loss"], rel=1e-6)
    assert summary["kl"] == pytest.approx(lowest["val_kl"], rel=1e-6)


EARLY = ["--lr", "0.03", "--epochs", "40", "--early-stopping", "2",
         "--checkpoint-every-steps", "1", "--keep", "1000"]


@pytest.fixture(scope="module")
def stopped(tmp_path_factory):
    """A run whose validation loss levels off: it stops early."""
    run = tmp_path_factory.mktemp("early") / "run"
    out = io.StringIO()
    with pytest.MonkeyPatch.context() as patch, contextlib.redirect_stdout(out):
        patch.setattr(warnings, "showwarning", warnings.showwarning)
        assert main(["train", *SMALL, *EARLY, "--out", str(run)]) == 0
    return run, out.getvalue()


def test_early_stopping_ends_the_run_with_exit_0_and_a_line_saying_so(stopped):
    run, out = stopped
    metrics = records(run)
    last = metrics[-1]["epoch"]
    assert 3 <= last < 40
    validations = checkpoint.load(checkpoint.latest(run / "checkpoints")).data_position[
        "validations"]
    assert validations["stale"] == 2 and validations["best_epoch"] == last - 2
    assert all(r["val_loss"] >= validations["best_loss"] for r in metrics[-2:])
    assert (f"early stopping: the validation loss has not improved for 2 validations (lowest "
            f"{validations['best_loss']:.4f} after epoch {last - 2}); stopped after epoch "
            f"{last} of 40 in ") in out
    assert checkpoint.load(checkpoint.latest(run / "checkpoints")).epoch == last


def test_a_run_resumed_inside_its_last_epoch_still_stops_there(stopped, launch, tmp_path):
    """The count of validations without improvement travels in every checkpoint: a run
    resumed with one more bad validation to go stops after the same epoch."""
    run, _ = stopped
    last = records(run)[-1]["epoch"]
    inside = run / "checkpoints" / f"checkpoint-{(last - 1) * 5 + 2:09d}.npz"
    assert checkpoint.load(inside).data_position["validations"]["stale"] == 1
    code, out, err = launch("train", "--resume", inside, "--out", tmp_path / "branch")
    assert code == 0, err
    assert "early stopping:" in out
    assert same_bytes(final(tmp_path / "branch"), final(run))
    assert timeless(tmp_path / "branch") == timeless(run)[-1:]


def test_a_stopped_run_stays_stopped_until_the_patience_is_raised(stopped, launch, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(stopped[0], run)
    before = snapshot(run)
    code, out, err = launch("train", "--out", run, "--resume", "auto")
    assert code == 0, err
    assert "stopped early after epoch" in out and "nothing to do; raise --early-stopping" in out
    assert snapshot(run) == before
    last = records(run)[-1]["epoch"]
    code, _, err = launch("train", "--out", run, "--resume", "auto", "--early-stopping", "3",
                          "--epochs", str(last + 1))
    assert code == 0, err
    assert records(run)[-1]["epoch"] == last + 1
    assert json.loads((run / "changes.jsonl").read_text())["changes"] == {
        "epochs": [40, last + 1], "early_stopping": [2, 3]}


# ---------------------------------------------------------------- resume and refusals

@pytest.mark.parametrize("argv, free", [
    (["--accumulate", "2"], True), (["--validate-every", "3"], True),
    (["--early-stopping", "5"], True), (["--compression", "fp16"], False),
    (["--clip-grad-norm", "1"], False), (["--warmup-steps", "3"], False),
])
def test_what_a_resume_may_change(launch, accumulated, tmp_path, argv, free):
    run = tmp_path / "run"
    shutil.copytree(accumulated / "1", run)
    code, _, err = launch("train", "--out", run, "--resume", "auto", "--epochs", "4", *argv)
    if free:
        assert code == 0, err
    else:
        one_line_error(err, code, 2, rf"would change what the run computes: "
                                     rf"{argv[0][2:].replace('-', '_')} ")


@pytest.mark.parametrize("argv, message", [
    (["--deterministic", "--accumulate", "2"], r"--deterministic takes no --accumulate: its "
                                               r"--micro-batches already cut"),
    (["--deterministic", "--compression", "fp16"], r"--deterministic takes no --compression "
                                                   r"fp16"),
    (["--deterministic", "--overlap", "on"], r"--deterministic takes no --overlap on"),
    (["--overlap", "yes"], r"--overlap: expected one of auto, on, off, got 'yes'"),
    (["--bucket-mb", "0"], r"--bucket-mb: expected a number > 0.0, got '0'"),
    (["--warmup-epochs", "1", "--warmup-steps", "5"], r"give one of them"),
    (["--early-stopping", "3", "--val-fraction", "0"], r"--val-fraction 0 holds out no "
                                                       r"validation data"),
    (["--global-batch-size", "32", "--accumulate", "3"], r"--global-batch-size 32 cannot be "
                                                         r"shared equally by 1 ranks x 3 passes"),
    (["--compression", "fp8"], r"--compression: expected one of none, fp16, got 'fp8'"),
])
def test_options_that_cannot_go_together_are_one_line_and_exit_2(launch, tmp_path, argv,
                                                                 message):
    code, _, err = launch("train", *argv, "--out", tmp_path / "run")
    one_line_error(err, code, 2, message)
    assert not (tmp_path / "run").exists()


# ---------------------------------------------------------------- evaluate

def write_idx(path, array):
    magic = 0x803 if array.ndim == 3 else 0x801
    header = np.array([magic, *array.shape], ">u4").tobytes()
    path.write_bytes(header + array.astype(np.uint8).tobytes())


@pytest.fixture(scope="module")
def idx_run(tmp_path_factory):
    """MNIST's file layout holding digits (8x8): 1,500 to train on, 297 in t10k-*, and an
    AE trained on the training files."""
    root = tmp_path_factory.mktemp("idx")
    images, labels = datasets.load_digits()
    pixels = np.round(images[:, 0] * 255)
    for split, rows in (("train", slice(0, 1500)), ("t10k", slice(1500, None))):
        write_idx(root / f"{split}-images-idx3-ubyte", pixels[rows])
        write_idx(root / f"{split}-labels-idx1-ubyte", labels[rows])
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(warnings, "showwarning", warnings.showwarning)
        assert main(["train", "--model", "ae", "--dataset", f"mnist:{root}", "--epochs", "1",
                     "--hidden-sizes", "16", "--latent-dim", "3", "--out",
                     str(root / "run")]) == 0
    return root


def test_evaluate_takes_the_test_files_of_a_dataset_that_has_them(launch, idx_run):
    code, out, err = launch("evaluate", "--checkpoint", idx_run / "run", "--batch-size", "100")
    assert code == 0, err
    with open(idx_run / "run" / "evaluate" / "evaluation.csv") as file:
        rows = list(csv.DictReader(file))
    assert list(rows[0]) == ["index", "label", "loss", "recon"]  # a plain AE: no KL
    assert len(rows) == 297 and [int(r["index"]) for r in rows] == list(range(297))
    summary = json.loads((idx_run / "run" / "evaluate" / "evaluation.json").read_text())
    assert summary["split"] == "test" and summary["samples"] == 297
    assert summary["recon"] == pytest.approx(np.mean([float(r["recon"]) for r in rows]))
    assert (f"reconstruction loss (bce, summed over pixels) per sample over 297 samples of "
            f"mnist:{idx_run} (test): {summary['recon']:.4f}") in out


def test_evaluate_refuses_a_test_split_that_is_the_training_data(launch, accumulated,
                                                                  tmp_path):
    code, _, err = launch("evaluate", "--checkpoint", accumulated / "1",
                          "--out", tmp_path / "out")
    one_line_error(err, code, 2, r"dataset digits has no test split, and \S+ was trained on "
                                 r"it; pass --dataset with held-out data")
    assert not (tmp_path / "out").exists()


def test_evaluate_takes_another_file_whole_as_the_test_split(launch, accumulated, tmp_path):
    images, labels = datasets.load_digits()
    np.savez(tmp_path / "held.npz", images=images[:50], labels=labels[:50])
    code, out, err = launch("evaluate", "--checkpoint", accumulated / "1", "--dataset",
                            f"npz:{tmp_path / 'held.npz'}", "--out", tmp_path / "out")
    assert code == 0, err
    summary = json.loads((tmp_path / "out" / "evaluation.json").read_text())
    assert summary["samples"] == 50 and summary["loss"] == pytest.approx(
        summary["recon"] + summary["kl"])
    assert f"negative ELBO per sample over 50 samples of npz:{tmp_path / 'held.npz'} (test): " \
        f"{summary['loss']:.4f} (reconstruction {summary['recon']:.4f}, KL " in out


# ---------------------------------------------------------------- the Python function

def test_the_function_runs_the_command_and_returns_its_result(launch, tmp_path, capsys):
    small = dict(hidden_sizes=[32], latent_dim=4, val_fraction=0.9, noise_std=0.1, epochs=2)
    result = numpy_dl.launch.train(**small, out=str(tmp_path / "function"))
    assert result.run_dir == str(tmp_path / "function") and not result.stopped_early
    assert result.metrics == records(tmp_path / "function")[-1]
    assert result.checkpoint == str(checkpoint.latest(tmp_path / "function" / "checkpoints"))
    train(launch, tmp_path / "command", "--epochs", "2")
    assert timeless(tmp_path / "function") == timeless(tmp_path / "command")
    assert same_bytes(final(tmp_path / "function"), final(tmp_path / "command"))
    # A second call in the same process: resume to a third epoch, then nothing to do.
    again = numpy_dl.launch.train(out=str(tmp_path / "function"), resume="auto", epochs=3)
    assert again.metrics["epoch"] == 3 and again.checkpoint.endswith("checkpoint-000000015.npz")
    assert numpy_dl.launch.train(out=str(tmp_path / "function"), resume="auto",
                                 epochs=3) == again
    assert "nothing to do" in capsys.readouterr().out


def test_the_function_reads_a_config_file_under_its_options(tmp_path):
    (tmp_path / "run.toml").write_text('hidden-sizes = [32]\nlatent-dim = 4\nepochs = 5\n'
                                       'val-fraction = 0.9\n')
    result = numpy_dl.launch.train(config=str(tmp_path / "run.toml"), epochs=1,
                                   out=str(tmp_path / "run"))
    assert result.metrics["epoch"] == 1
    assert "hidden-sizes = [32]" in (tmp_path / "run" / "config.toml").read_text()


@pytest.mark.parametrize("given, message", [
    (dict(epochs=0), r"^train\(\): epochs: expected an integer >= 1, got 0$"),
    (dict(epocs=3), r"^train\(\): unknown option 'epocs'; expected one of "),
    (dict(deterministic=True, accumulate=2), r"--deterministic takes no"),
    (dict(config="/no/such.toml"), r"config file /no/such.toml does not exist"),
])
def test_the_function_raises_where_the_command_exits(tmp_path, given, message):
    """A UsageError, which is a ValueError, with the command's message; nothing written."""
    with pytest.raises(ValueError, match=message) as caught:
        numpy_dl.launch.train(**given, out=str(tmp_path / "run"))
    assert isinstance(caught.value, UsageError) and caught.value.exit_code == 2
    assert not (tmp_path / "run").exists()
