"""The launcher end to end in one process: every command on small runs, the run
directory's files, and every error case as one line with its exit code, leaving what was
written before untouched. (test_launch_mpi.py runs the same under mpirun.)"""
import csv
import json
import os
import re
import sys
import time
import warnings

import numpy as np
import pytest

import numpy_dl
from distributed_helpers import UNDER_MPI, run
from launch_helpers import QUICK, one_line_error, png_size, snapshot
from numpy_dl.distributed import SingleProcessCommunicator
from numpy_dl.launch import progress
from numpy_dl.launch.cli import build_parser, main, script
from numpy_dl.launch.console import Console
from numpy_dl.launch.config import tomllib  # or tomli, on Python 3.10

pytestmark = pytest.mark.skipif(UNDER_MPI, reason="trains in this process as a world of one; "
                                "test_launch_mpi.py runs the launcher under mpirun")

@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """A VAE run and an AE run, trained once for the whole module."""
    root = tmp_path_factory.mktemp("runs")
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(warnings, "showwarning", warnings.showwarning)
        for name in ("vae", "ae"):
            assert main(["train", "--model", name, "--out", str(root / name)] + QUICK) == 0
    return root


# ---------------------------------------------------------------- training and its files

def test_a_run_directory_holds_config_metrics_checkpoints_and_pictures(runs):
    run = runs / "vae"
    assert sorted(os.listdir(run)) == [".lock", "checkpoints", "config.toml", "images", "logs",
                                       "loss.png", "metrics.csv", "metrics.jsonl"]
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in records] == [1, 2]
    for key in ("train_loss", "train_recon", "train_kl", "val_loss", "val_recon", "val_kl",
                "samples_per_s", "seconds", "lr", "step"):
        assert all(np.isfinite(r[key]) for r in records), key
    # --images-every 12 by default: a 2-epoch run draws its last epoch alone
    assert sorted(os.listdir(run / "images")) == ["reconstructions-epoch-0002.png",
                                                  "samples-epoch-0002.png"]
    assert png_size(run / "images" / "samples-epoch-0002.png") == (8 * 34 + 2,) * 2
    # 16 validation digits over 2 pairs of rows of 8
    assert png_size(run / "images" / "reconstructions-epoch-0002.png") == (274, 138)
    assert png_size(run / "loss.png") == (1200, 750)
    # best.npz: the epoch of the lowest validation loss, outside the --keep rotation
    assert sorted(os.listdir(run / "checkpoints")) == ["best.npz", "checkpoint-000000000.npz",
                                                     "checkpoint-000000010.npz", "latest"]


def test_plain_autoencoders_have_no_kl_and_no_samples(runs):
    record = json.loads((runs / "ae" / "metrics.jsonl").read_text().splitlines()[-1])
    assert "val_kl" not in record and "train_kl" not in record
    assert not any(n.startswith("samples") for n in os.listdir(runs / "ae" / "images"))


def test_output_starts_with_the_configuration_and_has_a_line_per_epoch(launch, tmp_path):
    code, out, err = launch("train", "--out", tmp_path / "run", *QUICK)
    assert code == 0 and err == ""
    lines = out.splitlines()
    assert lines[0].startswith("numpy_dl ") and "1 rank" in lines[0]
    assert "global batch 32" in lines[0]
    assert 'model = "vae"' in lines and "epochs = 2" in lines
    epochs = [line for line in lines if line.startswith("epoch ")]
    assert len(epochs) == 2 and "samples/s" in epochs[0] and "val " in epochs[0]


def test_the_written_config_trains_the_same_model_again(launch, runs, tmp_path):
    config = runs / "vae" / "config.toml"
    assert tomllib.loads(config.read_text())["hidden-sizes"] == [32]
    code, _, _ = launch("train", "--config", config, "--out", tmp_path / "again")
    assert code == 0
    first = (runs / "vae" / "metrics.jsonl").read_text().splitlines()
    again = (tmp_path / "again" / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(a)["val_loss"] for a in again] == [json.loads(f)["val_loss"] for f in first]


def test_resuming_a_finished_run_has_nothing_to_do(launch, runs):
    before = snapshot(runs / "vae")
    code, out, _ = launch("train", "--out", runs / "vae", "--resume", "auto")
    assert code == 0 and "nothing to do" in out
    assert snapshot(runs / "vae") == before


def test_resuming_from_a_checkpoint_file_into_a_new_directory(launch, runs, tmp_path):
    checkpoint = runs / "vae" / "checkpoints" / "checkpoint-000000010.npz"
    code, out, err = launch("train", "--resume", checkpoint, "--out", tmp_path / "branch",
                            "--epochs", "3")
    assert code == 0, err
    assert f"resuming from {checkpoint} after epoch 2" in out
    assert [json.loads(line)["epoch"] for line in
            (tmp_path / "branch" / "metrics.jsonl").read_text().splitlines()] == [3]
    before = snapshot(tmp_path / "branch")
    code, _, err = launch("train", "--resume", checkpoint, "--out", tmp_path / "branch")
    one_line_error(err, code, 2, r"run directory \S+branch is not empty")
    assert snapshot(tmp_path / "branch") == before


def test_a_resumed_run_counts_its_steps_on_from_the_checkpoint(launch, runs, tmp_path):
    """One step counter: the one the watchdog and replica check report is the run's."""
    from numpy_dl import distributed
    checkpoint = runs / "vae" / "checkpoints" / "checkpoint-000000010.npz"
    code, _, err = launch("train", "--resume", checkpoint, "--out", tmp_path / "branch",
                          "--epochs", "3")
    assert code == 0, err
    record = json.loads((tmp_path / "branch" / "metrics.jsonl").read_text().splitlines()[-1])
    assert record["step"] == distributed.init().step == 15  # 10, then an epoch of 5 steps


@pytest.mark.parametrize("model", ["conv-vae", "cvae"])
def test_conv_and_conditional_models_train_and_sample(launch, tmp_path, model):
    spec = "synthetic:400" if model == "conv-vae" else "digits"
    code, _, err = launch("train", "--model", model, "--dataset", spec, "--base-channels", "4",
                          "--out", tmp_path / "run", *QUICK[:-2], "--epochs", "1")
    assert code == 0, err
    code, _, err = launch("sample", "--checkpoint", tmp_path / "run", "--num", "10")
    assert code == 0, err
    side = 28 if model == "conv-vae" else 8
    assert np.load(tmp_path / "run" / "sample" / "samples.npy").shape == (10, 1, side, side)


def test_a_progress_bar_on_a_terminal(monkeypatch, capsys):
    monkeypatch.setattr(progress.sys.stderr, "isatty", lambda: True, raising=False)
    bar = progress.Progress(Console(SingleProcessCommunicator()), epochs=3, steps_per_epoch=2,
                            global_batch=64)
    bar.start_epoch(1)
    bar.step(0.5)
    time.sleep(0.15)  # tqdm redraws at most every 0.1 s
    bar.step(0.25)
    bar.end_epoch("epoch 1/3 summary")
    captured = capsys.readouterr()
    assert "loss=0.3750" in captured.err and "samples_per_s=" in captured.err
    assert captured.out == "epoch 1/3 summary\n"


# ---------------------------------------------------------------- the commands

def test_sample_writes_a_grid_and_the_array(launch, runs, tmp_path):
    code, out, _ = launch("sample", "--checkpoint", runs / "vae", "--num", "12", "--columns", "6",
                          "--out", tmp_path)
    assert code == 0 and "samples.png" in out
    assert png_size(tmp_path / "samples.png") == (6 * 34 + 2, 2 * 34 + 2)
    samples = np.load(tmp_path / "samples.npy")
    assert samples.shape == (12, 1, 8, 8) and samples.dtype == np.float32


def test_reconstruct_interpolate_encode_and_score(launch, runs):
    checkpoint = runs / "ae" / "checkpoints" / "checkpoint-000000010.npz"
    code, out, _ = launch("reconstruct", "--checkpoint", checkpoint, "--split", "val", "--num", "8")
    assert code == 0 and "mean squared error per pixel over 1617 samples" in out
    assert png_size(runs / "ae" / "reconstruct" / "reconstructions.png") == (274, 70)
    assert launch("interpolate", "--checkpoint", runs / "ae", "--between", "3,9",
                  "--steps", "5")[0] == 0
    assert png_size(runs / "ae" / "interpolate" / "interpolation.png") == (5 * 34 + 2, 36)
    assert launch("encode", "--checkpoint", runs / "ae", "--split", "train")[0] == 0
    assert np.load(runs / "ae" / "encode" / "latents.npy").shape == (180, 4)
    assert np.load(runs / "ae" / "encode" / "labels.npy").shape == (180,)
    code, out, _ = launch("score", "--checkpoint", runs / "ae", "--quantile", "0.9")
    assert code == 0 and "threshold at quantile 0.9" in out
    with open(runs / "ae" / "score" / "scores.csv") as file:
        rows = list(csv.DictReader(file))
    errors = np.array([float(r["error"]) for r in rows])
    assert len(rows) == 1797 and [int(r["index"]) for r in rows] == list(range(1797))
    threshold = np.quantile(errors, 0.9)
    assert [int(r["anomaly"]) for r in rows] == list((errors > threshold).astype(int))


def test_info_works_without_mpi(launch):
    code, out, _ = launch("info")
    assert code == 0
    assert "world size: 1" in out and "ranks per node: 1" in out and "BLAS:" in out
    assert "not started by an MPI launcher" in out


# ---------------------------------------------------------------- errors

@pytest.mark.parametrize("argv, pattern", [
    (["train", "--bogus"], r"train: unknown argument '--bogus'; `.* --help` lists the options"),
    (["train", "--model", "gan"], r"--model: expected one of ae, conv-ae, vae, conv-vae, cvae"),
    (["train", "--dataset", "cifar"], r"unknown dataset 'cifar'; expected one of digits, "
                                      r"mnist-5k, mnist:DIR"),
    (["train", "--dataset", "mnist:/no/such/dir"], r"mnist: directory /no/such/dir does not exist"),
    (["train", "--resume", "auto"], r"--resume auto continues the run in --out"),
    (["sample", "--checkpoint", "/no/such/run"], r"checkpoint /no/such/run does not exist"),
    (["frobnicate"], r"unknown command 'frobnicate'; expected one of train, sample, "),
    (["trian"], r"^numpy_dl: error: python -m numpy_dl.launch: unknown command 'trian'; "
                r"did you mean train\?$"),
    (["smaple", "--checkpoint", "x"], r"unknown command 'smaple'; did you mean sample\?$"),
    (["train", "--hidden-sizes", "256", "128"], r"unknown argument '128'; --hidden-sizes takes "
     r"its values comma separated, as in --hidden-sizes 256,128$"),
    (["train", "--hidden-sizes=256,", "128", "64"], r"unknown argument '128'; --hidden-sizes "
     r"takes its values comma separated, as in --hidden-sizes 256,128,64$"),
    (["train", "--hidden-sizes", "64", "--epochs", "2", "5"],
     r"unknown argument '5'; `python -m numpy_dl.launch train --help` lists the options$"),
    (["train", "-n", "8"], r"unknown argument '-n'; the number of ranks is mpirun's option: "
                           r"mpirun -n N python -m numpy_dl.launch train$"),
])
def test_usage_errors_are_one_line_and_exit_2(launch, tmp_path, argv, pattern):
    code, out, err = launch(*argv, *(["--out", tmp_path / "run"] if argv[0] == "train"
                                     and "--resume" not in argv else []))
    one_line_error(err, code, 2, pattern)
    assert not (tmp_path / "run").exists()


def test_a_malformed_config_file_is_exit_2(launch, tmp_path):
    (tmp_path / "bad.toml").write_text("epochs = = 3\n")
    code, _, err = launch("train", "--config", tmp_path / "bad.toml", "--out", tmp_path / "run")
    one_line_error(err, code, 2, r"config file \S+bad.toml is not valid TOML")


def test_a_run_directory_holding_another_run_is_refused_and_untouched(launch, runs):
    before = snapshot(runs / "vae")
    code, _, err = launch("train", "--out", runs / "vae", "--epochs", "1")
    one_line_error(err, code, 2, r"run directory \S+ is not empty .*pass --resume auto")
    assert snapshot(runs / "vae") == before


def test_resuming_with_another_model_is_refused_and_untouched(launch, runs):
    before = snapshot(runs / "vae")
    code, _, err = launch("train", "--out", runs / "vae", "--resume", "--model", "ae",
                          "--epochs", "5")
    one_line_error(err, code, 2, r"checkpoint \S+ holds the model vae \(VariationalAutoencoder, "
                                 r".*\) but the options ask for ae \(Autoencoder")
    assert snapshot(runs / "vae") == before


def test_a_dataset_the_model_was_not_built_for_is_refused(launch, runs, tmp_path):
    code, _, err = launch("reconstruct", "--checkpoint", runs / "vae", "--dataset",
                          "synthetic:20", "--out", tmp_path / "out")
    one_line_error(err, code, 2, r"dataset synthetic:20 has images of shape 1x28x28 but the "
                                 r"model in \S+ was trained on 1x8x8")
    assert not (tmp_path / "out").exists()


def test_sampling_a_plain_autoencoder_is_refused(launch, runs):
    code, _, err = launch("sample", "--checkpoint", runs / "ae")
    one_line_error(err, code, 2, r"sample needs a variational model \(vae, conv-vae, cvae\); "
                                 r"this checkpoint holds an ae")
    assert not (runs / "ae" / "sample").exists()


def test_a_damaged_checkpoint_is_a_runtime_failure_exit_1(launch, runs, tmp_path):
    damaged = tmp_path / "damaged.npz"
    data = bytearray((runs / "vae" / "checkpoints" / "checkpoint-000000010.npz").read_bytes())
    data[len(data) // 2] ^= 0xFF
    damaged.write_bytes(bytes(data))
    code, _, err = launch("encode", "--checkpoint", damaged, "--out", tmp_path / "out")
    one_line_error(err, code, 1, r"damaged")
    assert not (tmp_path / "out").exists()


# ---------------------------------------------------------------- the command line itself

def test_version_prints_the_package_version(capsys):
    with pytest.raises(SystemExit) as exited:
        main(["--version"])
    assert exited.value.code == 0
    assert capsys.readouterr().out == f"numpy_dl {numpy_dl.__version__}\n"


@pytest.mark.parametrize("module", ["numpy_dl", "numpy_dl.launch"])
def test_python_m_runs_the_launcher_under_the_name_typed(module):
    result, _ = run([sys.executable, "-m", module, "--version"], timeout=60)
    assert (result.returncode, result.stdout) == (0, f"numpy_dl {numpy_dl.__version__}\n")
    result, _ = run([sys.executable, "-m", module, "trian"], timeout=60)
    one_line_error(result.stderr, result.returncode, 2,
                   rf"^numpy_dl: error: python -m {re.escape(module)}: unknown command 'trian'")
    result, _ = run([sys.executable, "-m", module, "score", "--help"], timeout=60)
    assert result.returncode == 0
    assert result.stdout.startswith(f"usage: python -m {module} score [-h] --checkpoint PATH")


def test_the_console_script_is_named_numpy_dl(monkeypatch, capsys):
    monkeypatch.setattr(sys, "argv", ["/somewhere/bin/numpy-dl", "trian"])
    code = script()
    one_line_error(capsys.readouterr().err, code, 2,
                   r"^numpy_dl: error: numpy-dl: unknown command 'trian'; did you mean train\?$")


def test_every_command_describes_itself_in_its_help():
    """`COMMAND --help` opens with a sentence of what the command does, not only the
    command list's few words."""
    for name, command in build_parser().commands.items():
        assert command.description and command.description.endswith("."), name
        assert command.description[0].isupper(), name
        shown = " ".join(command.format_help().split())
        assert f" {' '.join(command.description.split())} options:" in shown, name


# The kinds of value an option takes, as every command shows them; or {the,choices}.
PLACEHOLDERS = {"N", "X", "BOOL", "PATH", "DIR", "SPEC", "N,N,...", "I,J", "auto|PATH"}


def test_placeholders_name_the_kind_of_value_alike_in_every_command():
    shown = {}
    for name, command in build_parser().commands.items():
        for action in command._actions:
            if not action.option_strings or action.nargs == 0:
                continue  # --help, --version, --random: flags without a value
            flag = action.option_strings[0]
            if action.metavar is None:  # argparse shows the choices, or FLAG_NAME
                assert action.choices is not None, f"{name} {flag}: no placeholder"
                continue
            assert action.metavar in PLACEHOLDERS or re.fullmatch(
                r"\{[a-z0-9-]+(,[a-z0-9-]+)*\}", action.metavar), (name, flag, action.metavar)
            shown.setdefault(flag, set()).add(action.metavar)
    assert {flag: kinds for flag, kinds in shown.items() if len(kinds) > 1} == {}
    assert shown["--batch-size"] == shown["--threads"] == shown["--seed"] == {"N"}
