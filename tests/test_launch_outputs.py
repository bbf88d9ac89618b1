"""What a training run writes for people and tools, in this process: loss.png drawn with
matplotlib, pictures every --images-every epochs and at the last, metrics.csv beside
metrics.jsonl, TensorBoard event files, the per-rank log files, and --quiet.
(test_launch_mpi.py checks the logs, metrics.csv and the event files under mpirun.)"""
import csv
import json
import os
import signal
import subprocess
import sys
import warnings

import numpy as np
import pytest

from distributed_helpers import UNDER_MPI
from launch_helpers import (QUICK, csv_matches_jsonl, one_line_error, png_size,
                            tensorboard_events)
from numpy_dl.launch import loggers, plots
from numpy_dl.launch.train import Training

pytestmark = pytest.mark.skipif(UNDER_MPI, reason="trains in this process as a world of one")

# 180 training digits in batches of 90: 2 steps per epoch, for runs of many epochs.
TINY = ["--val-fraction", "0.9", "--batch-size", "90", "--hidden-sizes", "16",
        "--latent-dim", "2"]


def records_of(run):
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def csv_rows(run):
    with open(run / "metrics.csv", newline="") as file:
        return list(csv.DictReader(file))


def pictures(run):
    return sorted(os.listdir(run / "images"))


def drawn_epochs(run, kind="reconstructions"):
    return [int(name[-8:-4]) for name in pictures(run) if name.startswith(kind)]


# ---------------------------------------------------------------- loss.png

def vae_records(epochs, val=True, first=1):
    """metrics.jsonl-like records of a VAE whose loss falls from 100 to about 10."""
    records = []
    for epoch in range(first, first + epochs):
        recon, kl = 90.0 / epoch + 8, 0.1 * epoch
        record = {"epoch": epoch, "train_loss": recon + kl, "train_recon": recon, "train_kl": kl}
        if val:
            record.update(val_loss=recon + kl + 1, val_recon=recon + 1, val_kl=kl)
        records.append(record)
    return records


def test_the_loss_plot_has_titled_axes_a_legend_and_a_log_scale_where_it_helps(tmp_path):
    figure = plots.loss_figure(vae_records(60), "bce", 4.0, "vae on digits")
    loss, parts = figure.axes
    assert figure.get_size_inches() * figure.dpi == pytest.approx((1200, 750))
    assert "binary cross-entropy summed over each sample's pixels" in figure.texts[0].get_text()
    assert loss.get_title() == "loss: negative ELBO = reconstruction + 4 x KL"
    for axes in (loss, parts):
        assert axes.get_xlabel() == "epoch" and axes.get_ylabel() == "loss per sample"
        assert all(float(t).is_integer() for t in axes.get_xticks())
        assert all(line.get_visible() for line in axes.get_xgridlines() + axes.get_ygridlines())
    assert [t.get_text() for t in loss.get_legend().get_texts()] == ["training", "validation"]
    assert [t.get_text() for t in parts.get_legend().get_texts()] == [
        "training reconstruction", "training KL", "validation reconstruction", "validation KL"]
    assert [line.get_linestyle() for line in parts.get_lines()] == ["-", "--", "-", "--"]
    # The loss, from 98 down to 15, spans less than a decade; its terms, 0.1 to 98, more.
    assert (loss.get_yscale(), parts.get_yscale()) == ("linear", "log")
    plots.save_loss_plot(tmp_path / "loss.png", vae_records(60), "bce", 1.0, "vae on digits")
    assert png_size(tmp_path / "loss.png") == (1200, 750)


def test_the_loss_plot_of_an_autoencoder_without_validation_and_of_one_epoch():
    records = [{k: v for k, v in r.items() if "kl" not in k} for r in vae_records(1, val=False,
                                                                                   first=7)]
    for r in records:
        r["train_loss"] = r["train_recon"]
    (axes,) = plots.loss_figure(records, "mse", 1.0, "ae on digits").axes
    assert axes.get_title() == "loss: the reconstruction error"
    assert [t.get_text() for t in axes.get_legend().get_texts()] == ["training"]
    assert list(axes.get_xticks()) == [7]  # one epoch: one tick, not fractions of one
    assert axes.get_lines()[0].get_marker() == "o"  # a single point shows


def test_validation_is_drawn_at_the_epochs_that_have_it():
    records = vae_records(6)
    for record in records[::2]:  # as --validate-every 2: epochs 1, 3, 5 not validated
        for key in ("val_loss", "val_recon", "val_kl"):
            del record[key]
    loss, _ = plots.loss_figure(records, "bce", 1.0, "vae").axes
    assert list(loss.get_lines()[1].get_xdata()) == [2, 4, 6]


def test_importing_numpy_dl_loads_neither_matplotlib_nor_tensorboardx():
    script = ("import sys, numpy_dl, numpy_dl.launch.cli, numpy_dl.launch.train; "
              "print([m for m in ('matplotlib', 'tensorboardX') if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         check=True).stdout
    assert out.strip() == "[]"


# ---------------------------------------------------------------- --images-every

def test_a_60_epoch_run_writes_at_most_a_dozen_pngs(launch, tmp_path):
    run = tmp_path / "run"
    code, _, err = launch("train", *TINY, "--epochs", "60", "--out", run)
    assert code == 0, err
    pngs = [os.path.join(root, name) for root, _, names in os.walk(run) for name in names
            if name.endswith(".png")]
    assert len(pngs) <= 12, pngs
    assert drawn_epochs(run) == drawn_epochs(run, "samples") == [12, 24, 36, 48, 60]
    assert png_size(run / "loss.png") == (1200, 750)


def test_pictures_and_loss_plot_come_every_n_epochs_and_at_the_last(launch, tmp_path,
                                                                    monkeypatch):
    drawn = []
    original = plots.save_loss_plot

    def recording(path, records, *args):
        drawn.append([r["epoch"] for r in records])
        original(path, records, *args)
    monkeypatch.setattr(plots, "save_loss_plot", recording)
    run = tmp_path / "run"
    code, _, err = launch("train", *TINY, "--epochs", "5", "--images-every", "2", "--out", run)
    assert code == 0, err
    assert drawn_epochs(run) == drawn_epochs(run, "samples") == [2, 4, 5]
    assert drawn == [[1, 2], [1, 2, 3, 4], [1, 2, 3, 4, 5]]  # each plot of every epoch so far
    drawn.clear()
    code, _, err = launch("train", "--out", run, "--resume", "--epochs", "7")
    assert code == 0, err
    assert drawn_epochs(run) == [2, 4, 5, 6, 7]  # the first run's last, then 6 and 7
    assert drawn == [[1, 2, 3, 4, 5, 6], [1, 2, 3, 4, 5, 6, 7]]


def test_a_run_that_stops_early_draws_its_last_epoch(launch, tmp_path, monkeypatch):
    """--early-stopping ends the run at an epoch --images-every did not choose: that
    epoch still gets its pictures and loss.png."""
    monkeypatch.setattr(Training, "stops_early",
                        lambda self: self.step >= 3 * self.steps_per_epoch)
    run = tmp_path / "run"
    code, _, err = launch("train", *TINY, "--epochs", "60", "--out", run)
    assert code == 0, err
    assert [r["epoch"] for r in records_of(run)] == [1, 2, 3]
    assert drawn_epochs(run) == drawn_epochs(run, "samples") == [3]
    assert (run / "loss.png").exists()


def test_a_run_stopped_by_a_signal_keeps_its_outputs_consistent_and_ends_them_on_resume(
        launch, tmp_path, monkeypatch):
    """SIGTERM in epoch 4 of 5: exit 75 after a checkpoint; the pictures of the epochs due
    before it stay, metrics.csv matches metrics.jsonl, the log says why the run ended,
    and the resumed run draws the last epoch."""
    validate = Training.validate

    def signalling(self):
        if self.step == 3 * self.steps_per_epoch:
            os.kill(os.getpid(), signal.SIGTERM)  # seen at the first step of epoch 4
        return validate(self)
    monkeypatch.setattr(Training, "validate", signalling)
    run = tmp_path / "run"
    code, _, err = launch("train", *TINY, "--epochs", "5", "--images-every", "2",
                          "--tensorboard", "--out", run)
    assert code == 75, err
    assert drawn_epochs(run) == [2] and [r["epoch"] for r in records_of(run)] == [1, 2, 3]
    assert csv_matches_jsonl(run)
    log = (run / "logs" / "rank-0.log").read_text().splitlines()
    assert log[-1].startswith("numpy_dl: stopped: SIGTERM received: stopped at step 7")
    monkeypatch.setattr(Training, "validate", validate)
    code, _, err = launch("train", "--out", run, "--resume")
    assert code == 0, err
    assert drawn_epochs(run) == [2, 4, 5] and csv_matches_jsonl(run)
    events = tensorboard_events(run / "tensorboard")
    assert [epoch for epoch, _ in events["train/loss"]] == [1, 2, 3, 4, 5]


# ---------------------------------------------------------------- metrics.csv

def test_metrics_csv_holds_the_records_of_metrics_jsonl(launch, tmp_path):
    run = tmp_path / "run"
    code, _, err = launch("train", *QUICK, "--epochs", "3", "--out", run)
    assert code == 0, err
    rows = csv_rows(run)
    assert list(rows[0]) == list(records_of(run)[0])  # the same fields, in the same order
    assert csv_matches_jsonl(run)
    table = np.genfromtxt(run / "metrics.csv", delimiter=",", names=True)  # a pandas-like reader
    assert list(table["epoch"]) == [1, 2, 3]
    np.testing.assert_array_equal(table["val_loss"], [r["val_loss"] for r in records_of(run)])


def test_epochs_without_validation_are_empty_cells(launch, tmp_path, monkeypatch):
    """A record without the validation fields (an epoch --validate-every skips) leaves
    them empty; one that brings a field the header lacks widens the header."""
    validate = Training.validate
    monkeypatch.setattr(Training, "validate",
                        lambda self: validate(self) if self.step % 10 == 0 else None)
    run = tmp_path / "run"
    code, _, err = launch("train", *QUICK, "--epochs", "3", "--out", run)
    assert code == 0, err
    rows = csv_rows(run)
    assert [row["val_loss"] != "" for row in rows] == [False, True, False]
    assert csv_matches_jsonl(run)


def test_a_resume_cuts_metrics_csv_back_with_metrics_jsonl(launch, tmp_path):
    """As after a kill between an epoch's metrics and its checkpoint: the CSV rows of the
    epochs trained again are neither lost nor doubled, and TensorBoard drops the
    interrupted run's events of those epochs."""
    run = tmp_path / "run"
    code, _, err = launch("train", *QUICK, "--epochs", "4", "--checkpoint-every", "2",
                          "--tensorboard", "--out", run)
    assert code == 0, err
    first = records_of(run)
    for name in os.listdir(run / "checkpoints"):  # keep the checkpoints of epochs 0 and 2
        if name.startswith("checkpoint-") and int(name[11:20]) > 10:
            os.remove(run / "checkpoints" / name)
    (run / "checkpoints" / "latest").write_text("checkpoint-000000010.npz\n")
    code, _, err = launch("train", "--out", run, "--resume")
    assert code == 0, err
    assert [r["epoch"] for r in records_of(run)] == [1, 2, 3, 4] and csv_matches_jsonl(run)
    assert records_of(run)[:2] == first[:2]
    events = tensorboard_events(run / "tensorboard")
    assert len(os.listdir(run / "tensorboard")) == 2  # one file per start, none overwritten
    assert events["val/loss"] == [(r["epoch"], pytest.approx(r["val_loss"], rel=1e-6))
                                  for r in records_of(run)]


def test_a_csv_widens_its_header_for_a_new_field_and_is_no_file_without_records(tmp_path):
    path = tmp_path / "metrics.csv"
    records = [{"epoch": 1, "loss": 2.5}]
    loggers.append_csv(path, records[0], lambda: records)
    records.append({"epoch": 2, "loss": 2.0})
    loggers.append_csv(path, records[1], lambda: records)
    assert path.read_text() == "epoch,loss\n1,2.5\n2,2.0\n"
    records.append({"epoch": 3, "val_loss": 1.5, "loss": 1.75})
    loggers.append_csv(path, records[2], lambda: records)  # rewritten with the new field
    assert path.read_text() == "epoch,loss,val_loss\n1,2.5,\n2,2.0,\n3,1.75,1.5\n"
    loggers.write_csv(path, [])  # a resume from epoch 0: no rows, and no header to read
    assert not path.exists()


# ---------------------------------------------------------------- TensorBoard

def test_tensorboard_gets_every_metric_per_epoch_and_the_pictures(launch, tmp_path):
    run = tmp_path / "run"
    code, _, err = launch("train", *QUICK, "--epochs", "3", "--images-every", "2",
                          "--tensorboard", "--out", run)
    assert code == 0, err
    events = tensorboard_events(run / "tensorboard")
    assert set(events) == {"train/loss", "train/recon", "train/kl", "val/loss", "val/recon",
                           "val/kl", "lr", "samples_per_s", "seconds", "reconstructions",
                           "samples"}
    for record in records_of(run):
        for key, value in record.items():
            if key not in ("epoch", "step"):
                tag = key.replace("_", "/", 1) if key.startswith(("train_", "val_")) else key
                assert (record["epoch"], pytest.approx(value, rel=1e-6)) in events[tag], key
    assert events["samples"] == [(2, (274, 274)), (3, (274, 274))]
    assert events["reconstructions"] == [(2, (274, 138)), (3, (274, 138))]


def test_tensorboard_without_tensorboardx_is_a_usage_error_before_anything_is_written(
        launch, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorboardX", None)  # `import tensorboardX` fails
    code, out, err = launch("train", *QUICK, "--tensorboard", "--out", tmp_path / "run")
    one_line_error(err, code, 2, r"--tensorboard needs the tensorboardX package, which is "
                                 r"not installed; install it with "
                                 r"pip install 'numpy_dl\[tensorboard\]'")
    assert out == "" and not (tmp_path / "run").exists()


# ---------------------------------------------------------------- logs and --quiet

def test_rank_0_logs_its_output_and_every_warning(launch, tmp_path, monkeypatch):
    validate = Training.validate

    def warning(self):
        warnings.warn("something odd on this rank")
        return validate(self)
    monkeypatch.setattr(Training, "validate", warning)
    run = tmp_path / "run"
    code, out, err = launch("train", *QUICK, "--out", run)
    assert code == 0
    assert "warning: something odd on this rank (UserWarning)" in err
    log = (run / "logs" / "rank-0.log").read_text().splitlines()
    assert log[0].startswith("--- numpy_dl ") and ", rank 0 of 1: process " in log[0]
    assert [line for line in log[1:] if "warning" not in line] == out.splitlines()
    assert "warning: something odd on this rank (UserWarning)" in log
    assert os.listdir(run / "logs") == ["rank-0.log"]


def test_quiet_prints_nothing_but_writes_everything(launch, tmp_path):
    run = tmp_path / "run"
    code, out, err = launch("train", *QUICK, "--quiet", "--out", run)
    assert (code, out, err) == (0, "", "")
    for name in ("config.toml", "metrics.jsonl", "metrics.csv", "loss.png", "images"):
        assert (run / name).exists(), name
    assert [r["epoch"] for r in records_of(run)] == [1, 2]
    log = (run / "logs" / "rank-0.log").read_text()
    assert "epoch 2/2  train " in log and "done: epoch 2 reached" in log
    assert "quiet =" not in (run / "config.toml").read_text()  # how it ran, not what it trains
    code, out, err = launch("train", "--out", run, "--resume", "--epochs", "3")
    assert code == 0 and "epoch 3/3" in out  # a resume is not quiet unless asked


def test_a_second_train_on_a_locked_run_writes_nothing_into_its_logs(launch, tmp_path):
    from numpy_dl.launch.rundir import RunDirectory
    run = tmp_path / "run"
    code, _, err = launch("train", *QUICK, "--out", run)
    assert code == 0, err
    before = (run / "logs" / "rank-0.log").read_text()
    holder = RunDirectory(run)
    holder.lock()
    try:
        code, _, err = launch("train", "--out", run, "--resume", "--epochs", "3")
    finally:
        holder.unlock()
    one_line_error(err, code, 2, "is in use by another train")
    assert (run / "logs" / "rank-0.log").read_text() == before
