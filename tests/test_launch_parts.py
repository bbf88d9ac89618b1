"""The launcher's parts, in process: picture sizes, evaluation shards, the models'
common interface and the run directory's rules."""
import io
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image

from numpy_dl import models
from numpy_dl.distributed import SingleProcessCommunicator, checkpoint
from numpy_dl.launch import images, inputs, rundir
from numpy_dl.launch.config import TrainConfig
from numpy_dl.launch.console import Console
from numpy_dl.launch.errors import RunError, UsageError
from numpy_dl.launch.evaluate import shard
from numpy_dl.launch.modeling import Autoencoding, model_arguments
from numpy_dl.loss import VAELoss


def png_size(image):
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return Image.open(io.BytesIO(buffer.getvalue())).size


@pytest.mark.parametrize("count, columns, side, channels, expected", [
    (64, 8, 8, 1, (8 * 34 + 2, 8 * 34 + 2)),      # 8x8 digits drawn 4x: 32-pixel cells
    (10, 4, 28, 1, (4 * 30 + 2, 3 * 30 + 2)),     # 28x28 kept at 1x; a short last row
    (3, 8, 16, 3, (3 * 34 + 2, 34 + 2)),          # fewer images than columns; RGB
])
def test_grids_have_the_documented_size(count, columns, side, channels, expected):
    pictures = np.random.default_rng(0).random((count, channels, side, side), dtype=np.float32)
    assert png_size(images.grid(pictures, columns)) == expected


def test_pairs_put_each_row_of_inputs_above_its_reconstructions():
    inputs = np.zeros((10, 1, 8, 8), np.float32)
    outputs = np.ones((10, 1, 8, 8), np.float32)
    picture = images.pairs(inputs, outputs, columns=8)
    assert picture.size == (8 * 34 + 2, 4 * 34 + 2)
    first_cell_row = [picture.getpixel((2 + 16, 2 + 34 * row + 16)) for row in range(4)]
    assert first_cell_row == [0, 255, 0, 255]


@pytest.mark.parametrize("count", [0, 1, 5, 180])
@pytest.mark.parametrize("ranks", [1, 2, 3, 8])
def test_evaluation_shards_count_every_sample_exactly_once(count, ranks):
    indices = np.arange(100, 100 + count)
    parts = [shard(indices, SimpleNamespace(rank=r, size=ranks)) for r in range(ranks)]
    assert np.array_equal(np.concatenate(parts), indices)


@pytest.mark.parametrize("name, shape", [("ae", (1, 8, 8)), ("vae", (1, 8, 8)),
                                         ("conv-ae", (3, 9, 9)), ("conv-vae", (1, 8, 8)),
                                         ("cvae", (1, 8, 8))])
def test_every_model_takes_and_returns_images(name, shape):
    config = TrainConfig(model=name, hidden_sizes=(16,), latent_dim=3, base_channels=2)
    class_name, arguments = model_arguments(config, shape, num_classes=4)
    auto = Autoencoding(models.build(class_name, **arguments), shape)
    x = np.random.default_rng(0).random((5,) + shape, dtype=np.float32)
    labels = np.arange(5) % 4
    eps = np.ones((5, 3), np.float32)
    recon, mu, logvar = auto.forward(x, labels, eps)
    assert recon.shape == (5,) + shape and mu.shape == (5, 3)
    assert (logvar is not None) == auto.variational == name.endswith("vae")
    reconstruction, kl = VAELoss("bce", 1.0, reduction="none").parts(recon, x, mu, logvar)
    assert reconstruction.shape == (5,) and (kl is None or kl.shape == (5,))


def test_models_that_cannot_take_the_data_are_usage_errors():
    with pytest.raises(UsageError, match="model conv-vae needs square images"):
        model_arguments(TrainConfig(model="conv-vae"), (1, 8, 6), None)
    with pytest.raises(UsageError, match="model cvae is conditioned on labels"):
        model_arguments(TrainConfig(model="cvae"), (1, 8, 8), None)


def test_a_fresh_run_refuses_a_non_empty_directory_and_leaves_it_alone(tmp_path):
    (tmp_path / "config.toml").write_text("epochs = 3\n")
    comm = SingleProcessCommunicator()
    with pytest.raises(UsageError, match="is not empty .* pass --resume auto"):
        rundir.plan(TrainConfig(out=str(tmp_path)), comm)
    assert [p.name for p in tmp_path.iterdir()] == ["config.toml"]
    assert rundir.plan(TrainConfig(out=str(tmp_path / "new")), comm)[1] is None


@pytest.mark.parametrize("resume", [None, "auto"])
def test_an_out_that_cannot_be_a_directory_is_refused_before_any_work(tmp_path, resume):
    (tmp_path / "afile").write_text("keep me")
    comm = SingleProcessCommunicator()
    for out, message in ((tmp_path / "afile", "is a file; expected a directory"),
                         (tmp_path / "afile" / "run", "cannot be created: .*afile is a file")):
        with pytest.raises(UsageError, match=message):
            rundir.plan(TrainConfig(out=str(out), resume=resume), comm)
    assert (tmp_path / "afile").read_text() == "keep me"
    (tmp_path / "dangling").symlink_to(tmp_path / "nowhere")
    with pytest.raises(UsageError, match="is a symbolic link to nothing"):
        rundir.plan(TrainConfig(out=str(tmp_path / "dangling"), resume=resume), comm)


def test_resume_auto_without_a_checkpoint_starts_the_run(tmp_path):
    run, found = rundir.plan(TrainConfig(out=str(tmp_path), resume="auto"),
                             SingleProcessCommunicator())
    assert (run.path, found) == (str(tmp_path), None)


def test_resume_auto_finds_the_checkpoints_of_a_run_that_lost_its_pointer(tmp_path):
    comm = SingleProcessCommunicator()
    model = models.Autoencoder(4, (3,), 2)
    saved = checkpoint.save(tmp_path / "checkpoints", model, step=7, comm=comm)
    (tmp_path / "checkpoints" / "latest").unlink()
    assert rundir.plan(TrainConfig(out=str(tmp_path), resume="auto"), comm)[1].path == saved
    assert rundir.find_checkpoint(tmp_path, comm) == saved


def test_a_checkpoint_file_belongs_to_the_run_above_its_folder(tmp_path):
    assert rundir.run_of(tmp_path / "run" / "checkpoints" / "c.npz") == str(tmp_path / "run")
    assert rundir.run_of(tmp_path / "loose" / "c.npz") == str(tmp_path / "loose")


class FakeWorld:
    """Rank `rank` of a world of `size`, recording aborts instead of ending the process."""

    def __init__(self, rank, size):
        self.rank, self.size, self.is_main, self.aborted = rank, size, rank == 0, None

    def abort(self, code):
        self.aborted = code


def test_an_agreed_error_is_reported_once_by_rank_0_naming_its_rank(capsys):
    for rank in (0, 1):
        error = UsageError("bad option")
        error.rank, error.agreed = 3, True
        world = FakeWorld(rank, 4)
        assert Console(world).fail(error) == 2 and world.aborted is None
    assert capsys.readouterr().err == "[rank 3] numpy_dl: error: bad option\n"


def test_an_error_on_one_rank_alone_aborts_the_job(capsys):
    world = FakeWorld(2, 4)
    Console(world).fail(RunError("disk full"))
    assert world.aborted == 1
    assert capsys.readouterr().err == "[rank 2] numpy_dl: error: disk full; aborting all 4 ranks\n"


def test_a_run_stores_its_data_files_by_absolute_path(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert inputs.with_absolute_path("npz:data/d.npz") == f"npz:{tmp_path}/data/d.npz"
    assert inputs.with_absolute_path("mnist:/data/mnist") == "mnist:/data/mnist"
    assert inputs.with_absolute_path("synthetic:100") == "synthetic:100"
    assert inputs.with_absolute_path("digits") == "digits"


def test_a_first_signal_is_recorded_and_a_second_ctrl_c_aborts_at_once():
    import os
    import signal
    from numpy_dl.launch.signals import StopRequests
    world = FakeWorld(0, 2)
    before = signal.getsignal(signal.SIGTERM)
    with StopRequests(world) as stops:
        os.kill(os.getpid(), signal.SIGTERM)  # recorded, not fatal
        os.kill(os.getpid(), signal.SIGUSR1)
        assert stops.signal == signal.SIGTERM and world.aborted is None
        os.kill(os.getpid(), signal.SIGINT)  # Ctrl-C after a request: now
        assert world.aborted == 130
    assert signal.getsignal(signal.SIGTERM) is before
    world = FakeWorld(0, 2)
    with StopRequests(world) as stops:
        os.kill(os.getpid(), signal.SIGINT)
        os.kill(os.getpid(), signal.SIGINT)  # the second Ctrl-C means now
    assert world.aborted == 130
