"""Resuming in this process: step checkpoints resume mid-epoch bitwise, a run owns its
directory, a resume that changes the run is refused or recorded, a non-finite value stops
the run with exit 3 and no checkpoint ever holds one."""
import json
import os
import shutil

import numpy as np
import pytest

from checkpoint_formats import rewrite_as_version
from distributed_helpers import UNDER_MPI
from launch_helpers import QUICK, one_line_error, snapshot
from numpy_dl import checkpoint
from numpy_dl.launch.rundir import RunDirectory

pytestmark = pytest.mark.skipif(UNDER_MPI, reason="trains in this process as a world of one")

# 180 training digits in batches of 32: 5 steps per epoch.
STEPS = ["--checkpoint-every-steps", "3", "--keep", "100", "--noise-std", "0.1"]


def timeless(run):
    return [{k: v for k, v in json.loads(line).items() if k not in ("samples_per_s", "seconds")}
            for line in (run / "metrics.jsonl").read_text().splitlines()]


def arrays(path):
    saved = checkpoint.load(path)
    return {**saved.model_state, **{f"{i}/{k}": np.asarray(v)
                                    for i, entry in saved.optimizer_state["state"].items()
                                    for k, v in entry.items()}}


@pytest.fixture(scope="module")
def straight(tmp_path_factory):
    """A 4-epoch run with a checkpoint every 3 steps, never interrupted."""
    from numpy_dl.launch.cli import main
    run = tmp_path_factory.mktemp("straight") / "run"
    with pytest.MonkeyPatch.context() as patch:
        import warnings
        patch.setattr(warnings, "showwarning", warnings.showwarning)
        assert main(["train", *QUICK, *STEPS, "--epochs", "4", "--out", str(run)]) == 0
    return run


def test_step_checkpoints_record_the_position_inside_the_epoch(straight):
    saved = checkpoint.load(straight / "checkpoints" / "checkpoint-000000012.npz")
    assert saved.step == 12 and saved.epoch == 2
    assert saved.data_position["sample"] == 2 * 32 and saved.data_position["batch"] == 2
    assert len(saved.data_position["totals"]) == 1  # one rank's partial sums


@pytest.mark.parametrize("step", [3, 6, 9, 12])
def test_a_resume_from_inside_an_epoch_is_bitwise_the_straight_run(launch, straight, tmp_path,
                                                                   step):
    branch = tmp_path / "branch"
    code, out, err = launch("train", "--resume",
                            straight / "checkpoints" / f"checkpoint-{step:09d}.npz",
                            "--out", branch)
    assert code == 0, err
    assert "samples into epoch" in out
    epochs_done = checkpoint.load(branch / "checkpoints" / "checkpoint-000000020.npz").epoch
    assert epochs_done == 4
    assert timeless(branch) == [r for r in timeless(straight) if r["step"] > step - step % 5]
    final = "checkpoint-000000020.npz"
    expected, got = arrays(straight / "checkpoints" / final), arrays(branch / "checkpoints" / final)
    assert expected.keys() == got.keys()
    assert all(np.array_equal(expected[k], got[k]) for k in expected)


def test_resume_auto_drops_metrics_after_the_checkpoint_it_resumes(launch, straight, tmp_path):
    """As after a kill between a metrics line and its checkpoint: the line is trained again,
    never lost or doubled."""
    run = tmp_path / "run"
    shutil.copytree(straight, run)
    for name in os.listdir(run / "checkpoints"):
        if name.startswith("checkpoint-") and int(name[11:20]) > 8:
            os.remove(run / "checkpoints" / name)
    (run / "checkpoints" / "latest").write_text("checkpoint-000000020.npz\n")  # dangling now
    with open(run / "metrics.jsonl", "a") as file:
        file.write('{"epoch": 5, "st')  # a line cut short by the kill
    code, _, err = launch("train", "--out", run, "--resume", "auto")
    assert code == 0, err
    assert "names checkpoint-000000020.npz, which does not exist" in err
    assert timeless(run) == timeless(straight)


def test_a_second_train_on_a_directory_in_use_is_refused(launch, straight, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(straight, run)
    holder = RunDirectory(run)
    holder.lock()
    before = snapshot(run)
    code, out, err = launch("train", "--out", run, "--resume", "auto", "--epochs", "6")
    one_line_error(err, code, 2, r"run directory \S+ is in use by another train")
    assert out == ""  # refused before the run's banner
    assert snapshot(run) == before
    holder.unlock()
    code, _, err = launch("train", "--out", run, "--resume", "auto", "--epochs", "5")
    assert code == 0, err


def test_resume_auto_refuses_a_run_with_metrics_but_no_checkpoint(launch, straight, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(straight, run)
    shutil.rmtree(run / "checkpoints")
    before = snapshot(run)
    code, _, err = launch("train", "--out", run, "--resume", "auto")
    one_line_error(err, code, 2, r"has metrics of a run but no checkpoint")
    assert snapshot(run) == before


def test_a_resume_that_changes_the_run_is_refused_unless_allowed(launch, straight, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(straight, run)
    original = (run / "config.toml").read_text()
    before = snapshot(run)
    code, _, err = launch("train", "--out", run, "--resume", "auto", "--epochs", "5",
                          "--lr", "0.001", "--global-batch-size", "64", "--seed", "3")
    one_line_error(err, code, 2, r"would change what the run computes: lr 0.003 -> 0.001; "
                                 r"seed 0 -> 3; global batch 32 -> 64 .*--allow-changes")
    assert snapshot(run) == before
    code, _, err = launch("train", "--out", run, "--resume", "auto", "--epochs", "5",
                          "--lr", "0.001", "--allow-changes")
    assert code == 0, err
    assert (run / "config.toml").read_text() == original
    record = json.loads((run / "changes.jsonl").read_text())
    assert record["step"] == 20 and record["changes"] == {"epochs": [4, 5], "lr": [0.003, 0.001]}


def test_global_batch_size_is_shared_out(launch, tmp_path):
    code, out, err = launch("train", *QUICK, "--global-batch-size", "16", "--out", tmp_path / "g")
    assert code == 0, err
    assert "global batch 16 (1 x 16)" in out
    assert checkpoint.load(checkpoint.latest(tmp_path / "g" / "checkpoints")).config[
        "global_batch"] == 16


def test_timed_checkpoints_fall_due_inside_epochs(launch, tmp_path):
    code, _, err = launch("train", *QUICK, "--checkpoint-every-minutes", "1e-9", "--keep", "100",
                          "--out", tmp_path / "t")
    assert code == 0, err
    steps = sorted(int(n[11:20]) for n in os.listdir(tmp_path / "t" / "checkpoints")
                   if n.startswith("checkpoint-"))
    assert steps == list(range(0, 11))  # the starting point, then every step


def test_a_diverging_run_stops_with_exit_3_and_never_saves_a_non_finite_value(launch, tmp_path):
    run = tmp_path / "diverging"
    code, _, err = launch("train", *QUICK, "--epochs", "40", "--lr", "0.05", "--lr-schedule",
                          "exponential", "--lr-gamma", "8", "--checkpoint-every", "1",
                          "--out", run)
    lines = [line for line in err.splitlines() if "numpy_dl:" in line]
    assert code == 3 and len(lines) == 1, err
    assert "became non-finite at step" in lines[0] and "last good checkpoint:" in lines[0]
    for name in os.listdir(run / "checkpoints"):
        if name.endswith(".npz"):
            checkpoint.load(run / "checkpoints" / name)  # refuses a non-finite value


def test_every_command_refuses_a_checkpoint_with_non_finite_values(launch, straight, tmp_path):
    path = tmp_path / "nan.npz"
    with np.load(straight / "checkpoints" / "checkpoint-000000020.npz") as npz:
        contents = {key: npz[key] for key in npz.files}
    contents["model/fc_mu.bias"] = contents["model/fc_mu.bias"] * np.nan
    contents["checksum"] = np.frombuffer(checkpoint._checksum(contents).encode(), np.uint8)
    np.savez(path, **contents)
    for command in ("sample", "reconstruct", "score", "encode", "interpolate"):
        code, _, err = launch(command, "--checkpoint", path, "--out", tmp_path / command)
        one_line_error(err, code, 1, r"holds non-finite values in model/fc_mu.bias")
    code, _, err = launch("train", "--resume", path, "--out", tmp_path / "resumed")
    one_line_error(err, code, 1, r"holds non-finite values")


def test_a_checkpoint_at_an_epochs_last_step_does_not_double_its_metrics_line(launch, tmp_path):
    """A step checkpoint that falls on an epoch's last step is still inside that epoch: a
    kill after the epoch's metrics line resumes from it and writes the line once."""
    straight, run = tmp_path / "straight", tmp_path / "run"
    code, _, err = launch("train", *QUICK, "--epochs", "3", "--checkpoint-every-steps", "5",
                          "--keep", "100", "--out", straight)
    assert code == 0, err
    shutil.copytree(straight, run)
    for name in ("checkpoint-000000015.npz",):
        os.remove(run / "checkpoints" / name)
    (run / "checkpoints" / "latest").write_text("checkpoint-000000010.npz\n")
    assert checkpoint.load(run / "checkpoints" / "checkpoint-000000010.npz").epoch == 1
    code, _, err = launch("train", "--out", run, "--resume", "auto")
    assert code == 0, err
    assert timeless(run) == timeless(straight)


def test_a_branch_writes_its_starting_point_into_its_own_directory(launch, straight, tmp_path):
    """So that a branch killed before its first scheduled checkpoint resumes from its own
    directory instead of starting afresh."""
    branch = tmp_path / "branch"
    code, _, err = launch("train", "--resume", straight / "checkpoints" / "checkpoint-000000006.npz",
                          "--out", branch, "--checkpoint-every-steps", "0")
    assert code == 0, err
    start = checkpoint.load(branch / "checkpoints" / "checkpoint-000000006.npz")
    assert (start.step, start.epoch, start.data_position["sample"]) == (6, 1, 32)


def test_a_conv_run_of_checkpoint_format_2_resumes_with_its_own_decoder(launch, tmp_path):
    """A conv-vae run of numpy_dl before checkpoint format 3, whose decoder has a ReLU after
    its FC layer, goes on training that network: its checkpoints load with
    decoder_fc_activation "relu", the run continues exactly (stopped and resumed once more,
    it ends with the same bits), its new checkpoints are version 3 files of the same
    network, and the commands rebuild it. A new run has the guide's decoder."""
    conv = ["--model", "conv-vae", "--base-channels", "2", "--latent-dim", "3",
            "--val-fraction", "0.9", "--batch-size", "32", "--noise-std", "0.1"]
    old = tmp_path / "old"
    code, _, err = launch("train", *conv, "--epochs", "1", "--out", old)
    assert code == 0, err
    new = checkpoint.load(checkpoint.latest(old / "checkpoints"))
    assert new.metadata["format_version"] == 3 and "decoder.2.weight" in new.model_state
    assert "decoder_fc_activation" not in new.model_config
    for name in os.listdir(old / "checkpoints"):  # the run as numpy_dl 2 would have left it
        if name.endswith(".npz"):
            rewrite_as_version(old / "checkpoints" / name, 2)
    straight, stopped = tmp_path / "straight", tmp_path / "stopped"
    shutil.copytree(old, straight)
    shutil.copytree(old, stopped)

    code, out, err = launch("train", "--out", straight, "--resume", "auto", "--epochs", "3")
    assert code == 0, err
    assert "resuming from" in out
    for epochs in (2, 3):
        code, _, err = launch("train", "--out", stopped, "--resume", "auto", "--epochs", epochs)
        assert code == 0, err
    start = checkpoint.load(checkpoint.latest(old / "checkpoints"))
    final = checkpoint.load(checkpoint.latest(straight / "checkpoints"))
    assert start.metadata["format_version"] == 2 and "decoder.3.weight" in start.model_state
    assert final.metadata["format_version"] == 3 and final.epoch == 3
    assert final.model_config == start.model_config
    assert final.model_config["decoder_fc_activation"] == "relu"
    assert list(final.model_state) == list(start.model_state)
    assert not np.array_equal(final.model_state["decoder.3.weight"],
                              start.model_state["decoder.3.weight"])  # it trained
    expected, got = arrays(final.path), arrays(checkpoint.latest(stopped / "checkpoints"))
    assert expected.keys() == got.keys()
    assert all(np.array_equal(expected[k], got[k]) for k in expected)
    assert timeless(straight) == timeless(stopped)

    code, _, err = launch("sample", "--checkpoint", straight, "--num", "4",
                          "--out", tmp_path / "samples")
    assert code == 0, err
    assert np.load(tmp_path / "samples" / "samples.npy").shape == (4, 1, 8, 8)
