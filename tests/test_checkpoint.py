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

from distributed_helpers import (WORLD, digest, global_batch, local_part, mse, needs_mpirun,
                                 not_under_mpi, on_every_rank, output_of, run_script,
                                 shared_directory, small_model)

comm = WORLD
LOCAL_BATCH = 4


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
                                          ("future version", "version 3; this numpy_dl reads")])
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
