"""Checkpoints: format, atomic writes, keep-K, damage detection and exact resume.

The collective tests hold at any world size (rank 0 writes and reads, every rank gets
the result); the killed-writer tests run a single-process writer in a subprocess.
"""
import json
import os

import numpy as np
import pytest

import numpy_dl as ndl
from numpy_dl import distributed, optim
from numpy_dl.distributed import DistributedOptimizer, checkpoint
from numpy_dl.checkpoint import CheckpointError, _checksum

from checkpoint_formats import old_decoder_names, rewrite_as_version
from distributed_helpers import (WORLD, digest, global_batch, local_part, mse, needs_mpirun,
                                 not_under_mpi, on_every_rank, output_of, run_script,
                                 shared_directory, small_model)

comm = WORLD
LOCAL_BATCH = 4
DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data")


def make_run(seed):
    """A model with dropout (so the RNG matters), Adam and a scheduler, as a run builds them."""
    ndl.manual_seed(1000 + 10 * seed + comm.rank)  # each rank its own dropout stream
    model = small_model(seed=seed, dropout=0.2)
    optimizer = DistributedOptimizer(optim.Adam(model.parameters(), lr=1e-2), comm=comm)
    scheduler = optim.lr_scheduler.StepLR(optimizer, step_size=2, gamma=0.5)
    distributed.broadcast_parameters(model, comm)
    ndl.manual_seed(2000 + 10 * seed + comm.rank)
    return model, optimizer, scheduler


def train(model, optimizer, scheduler, first_step, steps):
    for step in range(first_step, first_step + steps):
        x, y = global_batch(step, LOCAL_BATCH * comm.size)
        optimizer.zero_grad()
        mse(model, local_part(x, comm), local_part(y, comm)).backward()
        optimizer.step()
        scheduler.step()


def save(directory, model, optimizer, scheduler, step, **options):
    return checkpoint.save(directory, model, optimizer, epoch=step // 3, step=step,
                           config={"lr": np.float32(0.01), "model": "mlp"},
                           data_position={"batch": step}, scheduler_state=scheduler.state_dict(),
                           comm=comm, **options)


def test_resume_continues_exactly(tmp_path):
    directory = shared_directory(tmp_path, comm)
    straight = make_run(seed=1)
    train(*straight, first_step=0, steps=5)

    first = make_run(seed=1)
    train(*first, first_step=0, steps=3)
    path = save(directory, *first, step=3)
    train(*first, first_step=3, steps=2)  # keeps drawing dropout masks: restore must rewind

    resumed = make_run(seed=2)  # another initialisation, overwritten by the checkpoint
    loaded = checkpoint.load(checkpoint.latest(directory, comm), comm)
    checkpoint.restore(loaded, *resumed, comm=comm)
    train(*resumed, first_step=loaded.step, steps=2)
    digests = on_every_rank(comm, digest(resumed[0].state_dict()))

    assert loaded.path == path and (loaded.epoch, loaded.step) == (1, 3)
    assert loaded.data_position == {"batch": 3} and loaded.config["lr"] == pytest.approx(0.01)
    assert resumed[1].param_groups[0]["lr"] == straight[1].param_groups[0]["lr"]
    assert digest(resumed[0].state_dict()) == digest(straight[0].state_dict())
    assert digest(resumed[1].state_dict()["state"][0]) == digest(straight[1].state_dict()["state"][0])
    assert len(set(digests)) == 1


def test_file_is_one_npz_readable_without_pickle(tmp_path):
    directory = shared_directory(tmp_path, comm)
    model, optimizer, scheduler = make_run(seed=1)
    train(model, optimizer, scheduler, first_step=0, steps=1)
    path = save(directory, model, optimizer, scheduler, step=1)
    if comm.is_main:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {key: npz[key] for key in npz.files}
        metadata = json.loads(arrays["metadata"].tobytes())
        assert sorted(os.listdir(directory)) == ["checkpoint-000000001.npz", "latest"]
        assert {f"model/{name}" for name in model.state_dict()} < set(arrays)
        assert {"optimizer/state/0/exp_avg", "optimizer/state/3/exp_avg_sq",
                "optimizer/state/3/step"} < set(arrays)
        assert metadata["format_version"] == checkpoint.FORMAT_VERSION
        assert metadata["model"] == {"name": "Sequential", "config": None}
        assert metadata["optimizer"]["type"] == "Adam"
        assert metadata["optimizer"]["param_groups"][0]["betas"] == [0.9, 0.999]
        assert metadata["world_size"] == comm.size == len(metadata["rng_states"])
        assert arrays["checksum"].tobytes().decode() == _checksum(arrays)  # metadata included


def test_keeps_the_last_k_and_points_at_the_newest(tmp_path):
    directory = shared_directory(tmp_path, comm)
    assert checkpoint.latest(directory, comm) is None
    run = make_run(seed=1)
    paths = [save(directory, *run, step=step, keep=2) for step in (1, 2, 3, 4)]
    listing = comm.bcast_object(sorted(os.listdir(directory)) if comm.is_main else None)
    assert checkpoint.latest(directory, comm) == paths[-1]
    assert listing == ["checkpoint-000000003.npz", "checkpoint-000000004.npz", "latest"]


def test_a_checkpoint_saved_as_a_file_of_its_own_stays_outside_the_rotation(tmp_path):
    directory = shared_directory(tmp_path, comm)
    run = make_run(seed=1)
    save(directory, *run, step=1, keep=1)
    best = checkpoint.save_as(os.path.join(directory, "best.npz"), run[0], run[1], epoch=0,
                              step=1, data_position={"batch": 1}, comm=comm)
    newest = save(directory, *run, step=2, keep=1)
    listing = comm.bcast_object(sorted(os.listdir(directory)) if comm.is_main else None)
    loaded = checkpoint.load(best, comm)
    assert listing == ["best.npz", "checkpoint-000000002.npz", "latest"]
    assert checkpoint.latest(directory, comm) == newest  # never the best one
    assert loaded.step == 1 and digest(loaded.model_state) == digest(run[0].state_dict())


def test_without_its_pointer_the_highest_step_is_the_latest(tmp_path):
    directory = shared_directory(tmp_path, comm)
    run = make_run(seed=1)
    highest, lower = save(directory, *run, step=12), save(directory, *run, step=9)
    if comm.is_main:  # copied without its pointer, in any order: write times say nothing
        os.remove(os.path.join(directory, "latest"))
        os.utime(highest, ns=(1_000_000_000, 1_000_000_000))
        os.utime(lower, ns=(2_000_000_000, 2_000_000_000))
    assert checkpoint.latest(directory, comm) == highest


def test_rebuilds_a_model_from_the_checkpoint_alone(tmp_path):
    models = pytest.importorskip("numpy_dl.models")
    directory = shared_directory(tmp_path, comm)
    ndl.manual_seed(3)
    model = models.Autoencoder(input_size=12, hidden_sizes=(8,), latent_dim=3)
    distributed.broadcast_parameters(model, comm)
    loaded = checkpoint.load(checkpoint.save(directory, model, comm=comm), comm)
    rebuilt = checkpoint.build_model(loaded)
    plain = checkpoint.load(checkpoint.save(directory, small_model(seed=0), step=1, comm=comm), comm)
    assert type(rebuilt) is type(model) and rebuilt.config == model.config
    assert digest(rebuilt.state_dict()) == digest(model.state_dict())
    assert loaded.optimizer_state is None
    with pytest.raises(CheckpointError, match="without a `config`"):
        checkpoint.build_model(plain)


def damage(path, how):
    """Rank 0 damages a checkpoint file the way `how` says."""
    if how == "truncated":
        with open(path, "r+b") as file:
            file.truncate(os.path.getsize(path) // 2)
        return
    with np.load(path, allow_pickle=False) as npz:
        arrays = {key: npz[key] for key in npz.files}
    metadata = json.loads(arrays["metadata"].tobytes())
    if how == "altered array":
        arrays["model/0.weight"] = arrays["model/0.weight"] + 1
    else:  # "future version"
        metadata["format_version"] = checkpoint.FORMAT_VERSION + 1
    arrays["metadata"] = np.frombuffer(json.dumps(metadata).encode(), dtype=np.uint8)
    np.savez(path, **arrays)


@pytest.mark.parametrize("how, message", [("truncated", "not a readable checkpoint"),
                                          ("altered array", "checksum"),
                                          ("future version",
                                           f"version {checkpoint.FORMAT_VERSION + 1}; "
                                           f"this numpy_dl reads")])
def test_damage_raises_one_clear_error_on_every_rank(tmp_path, how, message):
    directory = shared_directory(tmp_path, comm)
    path = save(directory, *make_run(seed=1), step=1)
    if comm.is_main:
        damage(path, how)
    with pytest.raises(CheckpointError, match=message):
        checkpoint.load(path, comm)


def test_missing_files_raise_checkpoint_errors(tmp_path):
    directory = shared_directory(tmp_path, comm)
    with pytest.raises(CheckpointError, match="no checkpoint at"):
        checkpoint.load(os.path.join(directory, "checkpoint-000000009.npz"), comm)
    if comm.is_main:
        with open(os.path.join(directory, "latest"), "w") as file:
            file.write("checkpoint-000000009.npz\n")
    with pytest.raises(CheckpointError, match="which does not exist"):
        checkpoint.latest(directory, comm)


def test_save_rejects_bad_input(tmp_path):
    directory = shared_directory(tmp_path, comm)
    model = small_model(seed=0)
    with pytest.raises(ValueError, match="keep must be"):
        checkpoint.save(directory, model, keep=0, comm=comm)
    with pytest.raises(TypeError, match="must be plain data"):
        checkpoint.save(directory, model, config={"callback": print}, comm=comm)
    assert checkpoint.latest(directory, comm) is None


# ---------------------------------------------------------------------------- killed writers
@not_under_mpi
@pytest.mark.parametrize("killed_at", ["checkpoint rename", "pointer rename"])
def test_a_killed_writer_leaves_the_previous_checkpoint_valid(tmp_path, killed_at):
    result, _ = run_script("killed_checkpoint_writer.py", tmp_path, killed_at, timeout=60)
    assert result.returncode == 9, output_of(result)
    leftovers = sorted(name for name in os.listdir(tmp_path) if name.endswith(".tmp"))
    path = checkpoint.latest(tmp_path, comm)
    loaded = checkpoint.load(path, comm)
    model = small_model(seed=0)
    checkpoint.save(tmp_path, model, step=3, comm=comm)  # the next save cleans up

    assert path == os.path.join(tmp_path, "checkpoint-000000001.npz") and loaded.step == 1
    assert digest(loaded.model_state) == digest(small_model(seed=1).state_dict())
    assert leftovers == ([".checkpoint-000000002.npz.tmp"] if killed_at == "checkpoint rename"
                         else [".latest.tmp"])
    assert not any(name.endswith(".tmp") for name in os.listdir(tmp_path))


# ---------------------------------------------------------------------------- other sizes
@needs_mpirun
def test_a_checkpoint_from_four_ranks_resumes_on_two_and_on_one(tmp_path):
    """Same global batches at every size, so 4 steps on 4 ranks then 3 on 2 (or 1) match
    7 steps in one process up to float32 rounding."""
    def finish(*args, **options):
        result, _ = run_script("resume_across_sizes.py", *args, **options)
        assert result.returncode == 0, output_of(result)

    finish("train", tmp_path, 4, ranks=4)
    finish("resume", tmp_path, 3, tmp_path / "on_two.npz", ranks=2)
    finish("resume", tmp_path, 3, tmp_path / "on_one.npz")
    finish("straight", "-", 7, tmp_path / "reference.npz")
    reference = np.load(tmp_path / "reference.npz")
    for name in ("on_two", "on_one"):
        resumed = np.load(tmp_path / f"{name}.npz")
        for key in reference.files:
            np.testing.assert_allclose(resumed[key], reference[key], rtol=1e-5, atol=1e-6,
                                       err_msg=f"{name}: {key}")


def test_a_file_that_is_no_archive_is_named_as_such_never_suggesting_pickle(tmp_path):
    directory = shared_directory(tmp_path, comm)
    path = os.path.join(directory, "checkpoint-000000001.npz")
    if comm.is_main:
        with open(path, "w") as file:
            file.write("not a checkpoint")
    with pytest.raises(CheckpointError, match="not a NumPy .npz archive") as error:
        checkpoint.load(path, comm)
    assert "pickle" not in str(error.value)


# ---------------------------------------------------------------------------- one process
def test_the_file_layer_works_without_a_communicator(tmp_path):
    from numpy_dl import checkpoint as files
    model = small_model(seed=3)
    optimizer = optim.Adam(model.parameters(), lr=1e-2)
    mse(model, *global_batch(0, 4)).backward()
    optimizer.step()
    assert files.latest(tmp_path) is None
    path = files.save(tmp_path, model, optimizer, epoch=1, step=7)
    loaded = files.load(files.latest(tmp_path))
    assert loaded.path == path and loaded.step == 7 and loaded.metadata["world_size"] == 1
    fresh = small_model(seed=4)
    fresh_optimizer = optim.Adam(fresh.parameters(), lr=1e-2)
    files.restore(loaded, fresh, fresh_optimizer)
    assert digest(fresh.state_dict()) == digest(model.state_dict())
    assert fresh_optimizer.state_dict()["state"][0]["step"] == 1


def test_an_atomic_write_that_fails_leaves_the_old_file_whole(tmp_path):
    from numpy_dl.checkpoint import write_atomically
    target = tmp_path / "file.txt"
    write_atomically(target, b"old\n")

    def fail_halfway(file):
        file.write(b"ne")
        raise OSError("disk full")
    with pytest.raises(OSError, match="disk full"):
        write_atomically(target, fail_halfway)
    assert target.read_bytes() == b"old\n" and os.listdir(tmp_path) == ["file.txt"]
    write_atomically(target, lambda file: file.write(b"new\n"))
    assert target.read_bytes() == b"new\n"


# ---------------------------------------------------------------------------- format versions
# Version 3 gave the conv models the user guide's decoder (FC -> reshape, no ReLU between);
# versions 1 and 2 hold conv models with a ReLU there, which load as exactly that network.
GUIDE_UP = ["ConvTranspose2d", "ReLU", "ConvTranspose2d", "ReLU", "ConvTranspose2d", "Sigmoid"]


def layer_types(sequential):
    return [type(layer).__name__ for layer in sequential]


def conv_model(name, **extra):
    from numpy_dl import models
    ndl.manual_seed(4)
    return models.build(name, in_channels=1, base_channels=2, latent_dim=3, image_size=8,
                        **extra)


def images_and_latents(model, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.uniform(0, 1, (4,) + model.input_shape[1:]).astype(np.float32)
    return x, rng.normal(0, 2, (4, model.latent_dim)).astype(np.float32)


def evaluated(model, x, z):
    """The model's outputs on x (recon, and mu and logvar of a VAE) and decoded z, in eval mode."""
    model.eval()
    with ndl.no_grad():
        out = model(ndl.tensor(x))
        return [t.data for t in (out if isinstance(out, tuple) else (out,))] + [
            model.decode(ndl.tensor(z)).data]


@pytest.mark.parametrize("name", ["ConvAutoencoder", "ConvVariationalAutoencoder"])
def test_a_new_conv_checkpoint_is_version_3_with_the_guides_decoder(tmp_path, name):
    directory = shared_directory(tmp_path, comm)
    model = conv_model(name)
    distributed.broadcast_parameters(model, comm)
    path = checkpoint.save(directory, model, comm=comm)
    loaded = checkpoint.load(path, comm)
    rebuilt = checkpoint.build_model(loaded)
    with np.load(path, allow_pickle=False) as npz:
        written = json.loads(npz["metadata"].tobytes())

    assert written["format_version"] == loaded.metadata["format_version"] == 3
    assert checkpoint.FORMAT_VERSION == 3
    assert written["model"] == {"name": name, "config": model.config} == loaded.metadata["model"]
    assert "decoder_fc_activation" not in loaded.model_config
    assert layer_types(rebuilt.decoder) == ["Linear", "Unflatten"] + GUIDE_UP
    assert "model/decoder.2.weight" in {f"model/{k}" for k in loaded.model_state}
    assert digest(rebuilt.state_dict()) == digest(model.state_dict())
    # The decoder of older checkpoints is refused, naming both.
    with pytest.raises(CheckpointError, match=r"guide's decoder, FC -> reshape, but the model "
                                              r"given has decoder_fc_activation='relu'"):
        checkpoint.restore(loaded, conv_model(name, decoder_fc_activation="relu"), comm=comm)


@pytest.mark.parametrize("name", ["conv-ae", "conv-vae"])
def test_a_format_2_conv_checkpoint_of_the_old_numpy_dl_loads_exactly(tmp_path, name):
    """tests/data holds checkpoints that numpy_dl wrote in format 2 and what it computed
    from them (see tests/data/make_format2_checkpoints.py): they rebuild the network they
    saved, FC -> ReLU -> reshape, with the same outputs; they resume; saved again, they are
    version 3 files of the same network."""
    from numpy_dl import models
    directory = shared_directory(tmp_path, comm)
    loaded = checkpoint.load(os.path.join(DATA, f"format2-{name}.npz"), comm)
    model = checkpoint.build_model(loaded)
    optimizer = optim.Adam(model.parameters())
    checkpoint.restore(loaded, model, optimizer, comm=comm)
    resaved = checkpoint.load(checkpoint.save(directory, model, optimizer, step=2, comm=comm),
                              comm)
    with np.load(os.path.join(DATA, "format2-expected.npz")) as npz:
        expected = {key[len(name) + 1:]: npz[key] for key in npz.files
                    if key.startswith(name + "/")}
    guide_config = {k: v for k, v in loaded.model_config.items() if k != "decoder_fc_activation"}

    assert loaded.metadata["format_version"] == 2
    assert loaded.model_config["decoder_fc_activation"] == "relu"
    assert layer_types(model.decoder)[:3] == ["Linear", "ReLU", "Unflatten"]
    assert list(model.state_dict()) == list(loaded.model_state)  # decoder.3.weight, ...
    assert "decoder.3.weight" in loaded.model_state
    assert digest(model.state_dict()) == digest(loaded.model_state)
    outputs = evaluated(model, expected["x"], expected["z"])
    keys = ["recon", "mu", "logvar", "decoded"] if model.variational else ["recon", "decoded"]
    for key, value in zip(keys, outputs, strict=True):
        np.testing.assert_allclose(value, expected[key], rtol=1e-6, atol=1e-7, err_msg=key)
    assert optimizer.state_dict()["state"][0]["step"] == 1
    with pytest.raises(CheckpointError, match=r"decoder_fc_activation='relu', FC -> relu -> "
                                              r"reshape \(the decoder of checkpoints before "
                                              r"format 3\), but the model given has the "
                                              r"guide's decoder, FC -> reshape; rebuild it with "
                                              r"build_model\(checkpoint\), or construct it with "
                                              r"decoder_fc_activation='relu'"):
        checkpoint.restore(loaded, models.build(loaded.model_name, **guide_config), comm=comm)

    assert resaved.metadata["format_version"] == 3
    assert resaved.model_config == loaded.model_config  # decoder_fc_activation "relu"
    again = checkpoint.build_model(resaved)
    assert digest(again.state_dict()) == digest(loaded.model_state)
    for key, value in zip(keys, evaluated(again, expected["x"], expected["z"]), strict=True):
        np.testing.assert_array_equal(value, outputs[keys.index(key)], err_msg=key)


@pytest.mark.parametrize("version", [1, 2])
@pytest.mark.parametrize("name", ["ConvAutoencoder", "ConvVariationalAutoencoder"])
def test_older_conv_checkpoints_rebuild_their_own_decoder(tmp_path, name, version):
    """The same weights written as version 1 or 2 (the old decoder's names, its config
    without decoder_fc_activation) are the network with a ReLU after the decoder's FC."""
    directory = shared_directory(tmp_path, comm)
    model = conv_model(name)
    distributed.broadcast_parameters(model, comm)
    path = checkpoint.save(directory, model, comm=comm)
    if comm.is_main:
        rewrite_as_version(path, version)
    loaded = checkpoint.load(path, comm)
    rebuilt = checkpoint.build_model(loaded)
    old = conv_model(name, decoder_fc_activation="relu")
    for mine, theirs in zip(model.parameters(), old.parameters(), strict=True):
        theirs.data[...] = mine.data

    assert loaded.metadata["format_version"] == version
    assert loaded.model_config == {**model.config, "decoder_fc_activation": "relu"}
    assert layer_types(rebuilt.decoder) == ["Linear", "ReLU", "Unflatten"] + GUIDE_UP
    assert digest(rebuilt.state_dict()) == digest(old_decoder_names(model.state_dict()))
    x, z = images_and_latents(model)
    for mine, theirs in zip(evaluated(rebuilt, x, z), evaluated(old, x, z), strict=True):
        np.testing.assert_array_equal(mine, theirs)
    assert not np.allclose(evaluated(model, x, z)[-1], evaluated(old, x, z)[-1])


def test_an_older_checkpoint_of_another_model_loads_as_it_was(tmp_path):
    from numpy_dl import models
    directory = shared_directory(tmp_path, comm)
    ndl.manual_seed(5)
    model = models.VariationalAutoencoder(input_size=12, hidden_sizes=[8], latent_dim=3)
    distributed.broadcast_parameters(model, comm)
    path = checkpoint.save(directory, model, comm=comm)
    if comm.is_main:
        rewrite_as_version(path, 2)
    loaded = checkpoint.load(path, comm)
    assert loaded.metadata["format_version"] == 2 and loaded.model_config == model.config
    assert digest(checkpoint.build_model(loaded).state_dict()) == digest(model.state_dict())
