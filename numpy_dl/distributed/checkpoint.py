"""Checkpoints: one self-describing .npz per save, written atomically by rank 0.

A checkpoint file is read with `np.load(path, allow_pickle=False)`, so loading one from an
untrusted source cannot run code. It holds:
    model/<name>                      the model's state_dict (parameters and buffers)
    optimizer/state/<index>/<name>    the optimizer's per-parameter state in PyTorch's
                                      layout (index: position across all param groups),
                                      `step` included
    metadata                          a uint8 array of UTF-8 JSON: format, format_version,
                                      numpy_dl_version, model {name, config}, epoch, step,
                                      data_position, config, optimizer {type, param_groups}
                                      (hyper-parameters), scheduler, world_size,
                                      rng_states (one per rank), created, arrays_sha256
`arrays_sha256` covers every array's name, dtype, shape and bytes; loading checks it and
the format version and raises one CheckpointError on any mismatch or damage.

A directory holds `checkpoint-<step>.npz` files (the `keep` most recently written) and
`latest`, a text file naming the newest complete one (without it, as in a copy that lost
it, the checkpoint of the highest step counts as the latest). Every file is written to a
temporary file in the same directory, fsynced, renamed over its target and the directory
fsynced, and `latest` moves only after its checkpoint is complete, so a writer killed at
any moment leaves the previous checkpoint and `latest` valid.

save, latest and load are collective: rank 0 does the file work and the other ranks get
its result (or its error). Nothing depends on the number of ranks, so a checkpoint
written by 4 ranks resumes on 2 or on 1; only the RNG streams are restored exactly at
the same world size.

    path = checkpoint.save(run_dir, model, optimizer, epoch=3, step=1200, config=cfg,
                           data_position={"epoch": 3, "batch": 0}, comm=comm, keep=3)
    ckpt = checkpoint.load(checkpoint.latest(run_dir, comm), comm)   # latest -> None if none
    checkpoint.restore(ckpt, model, optimizer, scheduler, comm=comm)
    model = checkpoint.build_model(ckpt)      # from numpy_dl.models, without the config
"""
import contextlib
import datetime
import hashlib
import json
import os
import re
import warnings
import zipfile
from dataclasses import dataclass

import numpy as np

from .. import __version__
from .. import random as ndl_random
from .broadcast import on_root
from .communicator import resolve

FORMAT = "numpy_dl.checkpoint"
FORMAT_VERSION = 1
POINTER = "latest"
_CHECKPOINT_NAME = re.compile(r"checkpoint-(\d+)\.npz")
_TEMPORARY_NAME = re.compile(r"\.(checkpoint-\d+\.npz|latest)\.tmp")


class CheckpointError(Exception):
    """A checkpoint is missing, damaged, or of a format this numpy_dl does not read."""


@dataclass
class Checkpoint:
    path: str
    metadata: dict
    model_state: dict            # name -> array, as Module.state_dict()
    optimizer_state: dict        # Optimizer.state_dict() layout, or None

    epoch = property(lambda self: self.metadata["epoch"])
    step = property(lambda self: self.metadata["step"])
    config = property(lambda self: self.metadata["config"])
    data_position = property(lambda self: self.metadata["data_position"])
    scheduler_state = property(lambda self: self.metadata["scheduler"])
    model_name = property(lambda self: self.metadata["model"]["name"])
    model_config = property(lambda self: self.metadata["model"]["config"])


# ---------------------------------------------------------------------------- saving
def save(directory, model, optimizer=None, *, epoch=0, step=0, config=None,
         data_position=None, scheduler_state=None, comm=None, keep=3):
    """Write a checkpoint of `model` (and `optimizer`) as rank 0 holds them; return its
    path on every rank. Collective. `step` is the global step count and names the file;
    config, data_position and scheduler_state (e.g. `scheduler.state_dict()`) are stored
    as JSON. Keeps the `keep` most recently written checkpoints in `directory`."""
    comm = resolve(comm)
    if isinstance(keep, bool) or not isinstance(keep, int) or keep < 1:
        raise ValueError(f"checkpoint.save: keep must be an integer >= 1, got {keep!r}")
    if int(step) < 0 or int(epoch) < 0:
        raise ValueError(f"checkpoint.save: epoch and step must be >= 0, got {epoch}, {step}")
    rng_states = comm.gather_object(ndl_random.get_rng_state())
    metadata = dict(epoch=int(epoch), step=int(step), config=config, data_position=data_position,
                    scheduler=scheduler_state, world_size=comm.size, rng_states=rng_states)
    path = os.path.join(directory, f"checkpoint-{int(step):09d}.npz")
    return on_root(lambda: _write_checkpoint(path, model, optimizer, metadata, keep), comm)


def _write_checkpoint(path, model, optimizer, metadata, keep):
    arrays = {f"model/{name}": value for name, value in model.state_dict().items()}
    optimizer_metadata = None
    if optimizer is not None:
        state = optimizer.state_dict()
        for index, entry in state["state"].items():
            arrays.update((f"optimizer/state/{index}/{name}", np.asarray(value))
                          for name, value in entry.items())
        wrapped = getattr(optimizer, "optimizer", optimizer)  # a DistributedOptimizer's own
        optimizer_metadata = {"type": type(wrapped).__name__,
                              "param_groups": state["param_groups"]}
    metadata = dict(format=FORMAT, format_version=FORMAT_VERSION, numpy_dl_version=__version__,
                    model={"name": type(model).__name__, "config": getattr(model, "config", None)},
                    optimizer=optimizer_metadata, **metadata,
                    created=datetime.datetime.now(datetime.timezone.utc).isoformat(),
                    arrays_sha256=_checksum(arrays))
    try:
        text = json.dumps(metadata, default=_plain)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"checkpoint.save: the metadata must be plain data (numbers, strings, "
                        f"lists, dicts): {exc}") from None
    directory, name = os.path.split(path)
    os.makedirs(directory or ".", exist_ok=True)
    arrays["metadata"] = np.frombuffer(text.encode(), dtype=np.uint8)
    _write_atomically(path, lambda file: np.savez(file, **arrays))
    _write_atomically(os.path.join(directory, POINTER), lambda file: file.write(f"{name}\n".encode()))
    _prune(directory, keep, newest=name)
    return path


def _plain(value):
    """JSON for the NumPy scalars and arrays that creep into configs."""
    if isinstance(value, (np.generic, np.ndarray)):
        return value.tolist()
    raise TypeError(f"{value!r} of type {type(value).__name__} is not JSON-serializable")


def _write_atomically(path, write):
    """Write via a temporary file in the same directory, fsync, rename, fsync the directory:
    `path` is always either the old complete file or the new complete one."""
    directory, name = os.path.split(path)
    temporary = os.path.join(directory, f".{name}.tmp")
    try:
        with open(temporary, "wb") as file:
            write(file)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.remove(temporary)
        raise
    descriptor = os.open(directory or ".", os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def _prune(directory, keep, newest):
    """Delete all but the `keep` most recently written checkpoints (never `newest`), and
    temporary files left by a writer that was killed."""
    names = os.listdir(directory)
    for name in names:
        if _TEMPORARY_NAME.fullmatch(name):
            os.remove(os.path.join(directory, name))
    checkpoints = [name for name in names if _CHECKPOINT_NAME.fullmatch(name) and name != newest]
    checkpoints.sort(key=lambda name: (os.stat(os.path.join(directory, name)).st_mtime_ns,
                                       int(_CHECKPOINT_NAME.fullmatch(name).group(1))))
    for name in checkpoints[:max(0, len(checkpoints) - (keep - 1))]:
        os.remove(os.path.join(directory, name))


def _checksum(arrays):
    digest = hashlib.sha256()
    for name in sorted(arrays):
        array = np.asarray(arrays[name], order="C")
        digest.update(f"{name}\0{array.dtype.str}\0{array.shape}\0".encode())
        digest.update(array)
    return digest.hexdigest()


# ---------------------------------------------------------------------------- loading
def latest(directory, comm=None):
    """The path of the newest complete checkpoint in `directory` (what `latest` names, or
    the checkpoint of the highest step when `latest` is missing), or None when there is
    none yet. Collective."""
    return on_root(lambda: _latest_path(directory), resolve(comm))


def _latest_path(directory):
    pointer = os.path.join(directory, POINTER)
    try:
        with open(pointer) as file:
            name = file.read().strip()
    except FileNotFoundError:
        # Files are renamed into place complete, so any of them is a valid checkpoint; the
        # step in the name survives a copy, where write times may not.
        names = os.listdir(directory) if os.path.isdir(directory) else []
        steps = {int(match.group(1)): name for name in names
                 if (match := _CHECKPOINT_NAME.fullmatch(name))}
        return os.path.join(directory, steps[max(steps)]) if steps else None
    if not _CHECKPOINT_NAME.fullmatch(name):
        raise CheckpointError(f"{pointer} should name a checkpoint file, but holds {name!r}")
    path = os.path.join(directory, name)
    if not os.path.exists(path):
        raise CheckpointError(f"{pointer} names {name}, which does not exist")
    return path


def load(path, comm=None):
    """Read a checkpoint on rank 0, verify it, and return it on every rank as a Checkpoint
    (path, metadata, model_state, optimizer_state). Collective; raises CheckpointError on
    every rank when the file is missing, damaged, or of another format version."""
    contents = on_root(lambda: _read(os.fspath(path)), resolve(comm))
    return Checkpoint(path=os.fspath(path), **contents)


def _read(path):
    try:
        with open(path, "rb") as file, np.load(file, allow_pickle=False) as npz:
            arrays = {key: npz[key] for key in npz.files}
    except FileNotFoundError:
        raise CheckpointError(f"no checkpoint at {path}") from None
    except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile) as exc:
        # NumPy's own words for a non-archive suggest loading it with pickle: never.
        detail = "" if "pickle" in str(exc) else f": {exc}"
        raise CheckpointError(f"{path} is not a readable checkpoint (not a NumPy .npz archive, "
                              f"or truncated or damaged){detail}") from None
    try:
        metadata = json.loads(arrays.pop("metadata").tobytes().decode())
    except (KeyError, ValueError) as exc:
        raise CheckpointError(f"{path} has no readable metadata record: {exc}") from None
    if metadata.get("format") != FORMAT or metadata.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(f"{path} is of format {metadata.get('format')!r} version "
                              f"{metadata.get('format_version')}; this numpy_dl reads {FORMAT!r} "
                              f"version {FORMAT_VERSION}")
    if _checksum(arrays) != metadata.get("arrays_sha256"):
        raise CheckpointError(f"{path} is damaged: its arrays do not match the checksum "
                              f"written with them")
    model_state, optimizer_state = {}, {}
    for key, value in arrays.items():
        section, _, name = key.partition("/")
        if section == "model":
            model_state[name] = value
        elif section == "optimizer" and name.startswith("state/"):
            _, index, state_name = name.split("/", 2)
            entry = optimizer_state.setdefault(int(index), {})
            entry[state_name] = int(value) if state_name == "step" else value
        else:
            raise CheckpointError(f"{path} holds an unexpected array {key!r}")
    optimizer = None
    if metadata["optimizer"] is not None:
        optimizer = {"state": optimizer_state,
                     "param_groups": [_hyper_parameters(g)
                                      for g in metadata["optimizer"]["param_groups"]]}
    return {"metadata": metadata, "model_state": model_state, "optimizer_state": optimizer}


def _hyper_parameters(group):
    """A param group back from JSON: its sequences (betas) were tuples; `params` a list."""
    return {key: tuple(value) if isinstance(value, list) and key != "params" else value
            for key, value in group.items()}


# ---------------------------------------------------------------------------- resuming
def restore(checkpoint, model, optimizer=None, scheduler=None, comm=None):
    """Load a Checkpoint into `model` (and `optimizer`, `scheduler`) on this rank, and
    numpy_dl's RNG state: this rank's own when the world size is the one that saved (so
    the run continues exactly), otherwise left as it is, with a warning on rank 0."""
    comm = resolve(comm)
    model.load_state_dict(checkpoint.model_state)
    if optimizer is not None:
        if checkpoint.optimizer_state is None:
            raise CheckpointError(f"{checkpoint.path} holds no optimizer state")
        optimizer.load_state_dict(checkpoint.optimizer_state)
    if scheduler is not None:
        if checkpoint.scheduler_state is None:
            raise CheckpointError(f"{checkpoint.path} holds no scheduler state")
        scheduler.load_state_dict(checkpoint.scheduler_state)
    rng_states = checkpoint.metadata["rng_states"]
    if len(rng_states) == comm.size:
        ndl_random.set_rng_state(rng_states[comm.rank])
    elif comm.is_main:
        warnings.warn(f"{checkpoint.path} was written by {len(rng_states)} ranks and resumes "
                      f"on {comm.size}: the random streams start afresh, so the run is not "
                      f"bitwise the one it would have been", stacklevel=2)


def build_model(checkpoint):
    """The model the checkpoint holds, rebuilt with numpy_dl.models.build from its class
    name and constructor arguments, with the checkpoint's weights."""
    if checkpoint.model_config is None:
        raise CheckpointError(f"{checkpoint.path} holds a {checkpoint.model_name} without a "
                              f"`config`, so it cannot be rebuilt from the checkpoint alone; "
                              f"build the model and call restore()")
    from .. import models
    model = models.build(checkpoint.model_name, **checkpoint.model_config)
    model.load_state_dict(checkpoint.model_state)
    return model
