"""Checkpoints in a data-parallel job: rank 0 does the file work, every rank gets the result.

The format, its validation and the atomic writing are `numpy_dl.checkpoint`'s; this
module makes save, save_as, latest and load collective (rank 0 reads or writes, the others
receive its result or its error, so no rank walks on alone) and restores each rank's own
RNG stream. Nothing in a checkpoint depends on the number of ranks, so one written by 4
ranks resumes on 2 or on 1; only the RNG streams are restored exactly at the same world
size:

.. code-block:: python

    path = checkpoint.save(run_dir, model, optimizer, epoch=3, step=1200, config=cfg,
                           data_position={"epoch": 3, "batch": 0}, comm=comm, keep=3)
    ckpt = checkpoint.load(checkpoint.latest(run_dir, comm), comm)   # latest -> None if none
    checkpoint.restore(ckpt, model, optimizer, scheduler, comm=comm)
    model = checkpoint.build_model(ckpt)      # from numpy_dl.models, without the config
"""
from .. import checkpoint as files
from .. import random as ndl_random
from ..checkpoint import FORMAT, FORMAT_VERSION, Checkpoint, CheckpointError, build_model
from .broadcast import on_root
from .communicator import resolve

__all__ = ["save", "save_as", "latest", "load", "load_latest", "restore", "build_model",
           "Checkpoint", "CheckpointError", "FORMAT", "FORMAT_VERSION"]


def save(directory, model, optimizer=None, *, comm=None, keep=3, **fields):
    """Write a checkpoint of `model` (and `optimizer`) as rank 0 holds them, with every
    rank's RNG state; return its path on every rank. Collective. The arguments are
    `numpy_dl.checkpoint.save`'s (epoch, step, config, data_position, scheduler_state)."""
    return _written(files.save, directory, model, optimizer, comm, keep=keep, **fields)


def save_as(path, model, optimizer=None, *, comm=None, **fields):
    """`save`, to the file `path` outside the rotation (`numpy_dl.checkpoint.save_as`)."""
    return _written(files.save_as, path, model, optimizer, comm, **fields)


def _written(write, where, model, optimizer, comm, **fields):
    """write(where, ...) on rank 0 with every rank's RNG state; its path on every rank."""
    comm = resolve(comm)
    rng_states = comm.gather_object(ndl_random.get_rng_state())
    return on_root(lambda: write(where, model, optimizer, rng_states=rng_states, **fields), comm)


def latest(directory, comm=None):
    """The path of the newest complete checkpoint in `directory`, or None. Collective."""
    return on_root(lambda: files.latest(directory), resolve(comm))


def load_latest(directory, comm=None):
    """The newest checkpoint in `directory` that verifies (see numpy_dl.checkpoint), on
    every rank, or None when there is none. Collective."""
    fields = on_root(lambda: _fields(files.load_latest(directory)), resolve(comm))
    return None if fields is None else Checkpoint(**fields)


def _fields(checkpoint):
    return None if checkpoint is None else vars(checkpoint)


def load(path, comm=None):
    """Read and verify a checkpoint on rank 0 and return it on every rank. Collective;
    raises CheckpointError on every rank when it is missing, damaged, or of another
    format version."""
    fields = on_root(lambda: vars(files.load(path)), resolve(comm))
    return Checkpoint(**fields)


def restore(checkpoint, model, optimizer=None, scheduler=None, comm=None):
    """Load a Checkpoint into this rank's `model` (and `optimizer`, `scheduler`) and its
    own RNG stream (when the world size is the one that saved)."""
    comm = resolve(comm)
    files.restore(checkpoint, model, optimizer, scheduler, rank=comm.rank, world_size=comm.size)
