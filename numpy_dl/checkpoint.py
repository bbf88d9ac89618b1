"""Checkpoints as files: the format, its validation, and the one atomic writer.

Everything here works in one process; `numpy_dl.distributed.checkpoint` adds the
collective versions (rank 0 does the file work, every rank gets the result).

A checkpoint file is read with `np.load(path, allow_pickle=False)`, so loading one from an
untrusted source cannot run code. It holds::

    model/<name>                      the model's state_dict (parameters and buffers)
    optimizer/state/<index>/<name>    the optimizer's per-parameter state in PyTorch's
                                      layout (index: position across all param groups),
                                      `step` included
    metadata                          a uint8 array of UTF-8 JSON: format, format_version,
                                      numpy_dl_version, model {name, config}, epoch, step,
                                      data_position, config, optimizer {type, param_groups}
                                      (hyper-parameters), scheduler, world_size,
                                      rng_states (one per rank), created
    checksum                          the sha256 (as ASCII hex) of the metadata's bytes and
                                      every other array's name, dtype, shape and bytes

Loading checks the format version, the checksum, the metadata's structure and that every
value is finite, and raises one CheckpointError on any damage; no checkpoint holding a
non-finite value is written either.

Versions. 3 (written now): the conv models (ConvAutoencoder, ConvVariationalAutoencoder)
have the user guide's decoder, FC -> reshape -> [ConvTranspose -> ReLU]* -> Output. 2 (the
same layout) and 1 (a checksum over the arrays alone, in the metadata as `arrays_sha256`)
are still read. Their conv models had a ReLU between the decoder's FC layer and the
reshape, and parameter names to match (decoder.3.weight where version 3 has
decoder.2.weight); loading such a file adds `decoder_fc_activation: "relu"` to its model
config (unless the config names one), so `build_model` rebuilds exactly the network that
was saved and a resumed run goes on training it. `restore` into a model of the other
decoder is refused with a CheckpointError that says so.

A directory holds `checkpoint-<step>.npz` files (the `keep` most recently written) and
`latest`, a text file naming the newest complete one (without it, as in a copy that lost
it, or when it is broken or names a missing file, the checkpoint of the highest step
counts as the latest, with a warning). Every file is written by `write_atomically`, and
`latest` moves only after its checkpoint is complete, so a writer killed at any moment
leaves the previous checkpoint and `latest` valid. `load_latest` goes further back when
the newest file does not verify. `save_as` writes one checkpoint file under a name of its
own (a run's checkpoints/best.npz), which neither `latest` nor the pruning ever counts.

    path = checkpoint.save(run_dir, model, optimizer, epoch=3, step=1200, config=cfg)
    ckpt = checkpoint.load(checkpoint.latest(run_dir))   # latest -> None if none yet
    checkpoint.restore(ckpt, model, optimizer, scheduler)
    model = checkpoint.build_model(ckpt)      # from numpy_dl.models, without the config
"""
import contextlib
import datetime
import hashlib
import json
import os
import re
import warnings
from dataclasses import dataclass

import numpy as np

from . import __version__
from . import random as ndl_random
from .data.npy_files import UnsoundArrayFile, read_npz

FORMAT = "numpy_dl.checkpoint"
FORMAT_VERSION = 3
READABLE_VERSIONS = (1, 2, 3)
# Models whose network changed in format version 3 (the guide's conv decoder), with the
# constructor argument that rebuilds the network of earlier versions.
LEGACY_CONV_MODELS = ("ConvAutoencoder", "ConvVariationalAutoencoder")
LEGACY_DECODER = {"decoder_fc_activation": "relu"}
POINTER = "latest"
_CHECKPOINT_NAME = re.compile(r"checkpoint-(\d+)\.npz")
_TEMPORARY_NAME = re.compile(r"\.(.+\.npz|latest)\.tmp")  # left by a killed writer


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


# ---------------------------------------------------------------------------- writing
def write_atomically(path, contents):
    """Write `contents` (bytes, or a function that writes to a binary file) to a
    temporary file in the same directory, fsync it, rename it over `path` and fsync the
    directory: `path` is always the old complete file or the new complete one, also
    after a crash or a power cut."""
    directory, name = os.path.split(os.fspath(path))
    temporary = os.path.join(directory, f".{name}.tmp")
    try:
        with open(temporary, "wb") as file:
            if callable(contents):
                contents(file)
            else:
                file.write(contents)
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


def save(directory, model, optimizer=None, *, epoch=0, step=0, config=None,
         data_position=None, scheduler_state=None, rng_states=None, keep=3):
    """Write a checkpoint of `model` (and `optimizer`) into `directory`; return its path.
    `step` is the global step count and names the file; config, data_position and
    scheduler_state (e.g. `scheduler.state_dict()`) are stored as JSON; `rng_states` is
    one RNG state per rank (default: this process's). Keeps the `keep` most recently
    written checkpoints."""
    if isinstance(keep, bool) or not isinstance(keep, int) or keep < 1:
        raise ValueError(f"checkpoint.save: keep must be an integer >= 1, got {keep!r}")
    name = f"checkpoint-{int(step):09d}.npz"
    path = save_as(os.path.join(directory, name), model, optimizer, epoch=epoch, step=step,
                   config=config, data_position=data_position,
                   scheduler_state=scheduler_state, rng_states=rng_states)
    write_atomically(os.path.join(directory, POINTER), f"{name}\n".encode())
    _prune(directory, keep, newest=name)
    return path


def save_as(path, model, optimizer=None, *, epoch=0, step=0, config=None,
            data_position=None, scheduler_state=None, rng_states=None):
    """Write a checkpoint file at `path` (atomically, as `save`) and return the path, outside
    any rotation: `latest` stays as it is and nothing is pruned, so a file kept for its own
    sake (a run's best checkpoint) lives beside the rotating ones. The arguments are
    `save`'s."""
    if int(step) < 0 or int(epoch) < 0:
        raise ValueError(f"checkpoint.save: epoch and step must be >= 0, got {epoch}, {step}")
    rng_states = [ndl_random.get_rng_state()] if rng_states is None else list(rng_states)
    arrays, optimizer_metadata = _arrays(model, optimizer)
    for key, array in arrays.items():
        if array.dtype.kind in "fc" and not np.isfinite(array).all():
            raise CheckpointError(f"refusing to write a checkpoint whose {key} holds "
                                  f"non-finite values (a resume would start from them)")
    metadata = dict(format=FORMAT, format_version=FORMAT_VERSION, numpy_dl_version=__version__,
                    model={"name": type(model).__name__, "config": getattr(model, "config", None)},
                    optimizer=optimizer_metadata, epoch=int(epoch), step=int(step),
                    config=config, data_position=data_position, scheduler=scheduler_state,
                    world_size=len(rng_states), rng_states=rng_states,
                    created=datetime.datetime.now(datetime.timezone.utc).isoformat())
    try:
        text = json.dumps(metadata, default=_plain, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"checkpoint.save: the metadata must be plain data (numbers, strings, "
                        f"lists, dicts; finite): {exc}") from None
    arrays["metadata"] = np.frombuffer(text.encode(), dtype=np.uint8)
    arrays["checksum"] = np.frombuffer(_checksum(arrays).encode(), dtype=np.uint8)
    os.makedirs(os.path.dirname(os.fspath(path)) or ".", exist_ok=True)
    write_atomically(path, lambda file: np.savez(file, **arrays))
    return os.fspath(path)


def _arrays(model, optimizer):
    """({key: array} of the model's and optimizer's state, the optimizer's metadata)."""
    arrays = {f"model/{name}": value for name, value in model.state_dict().items()}
    if optimizer is None:
        return arrays, None
    state = optimizer.state_dict()
    for index, entry in state["state"].items():
        arrays.update((f"optimizer/state/{index}/{name}", np.asarray(value))
                      for name, value in entry.items())
    wrapped = getattr(optimizer, "optimizer", optimizer)  # a DistributedOptimizer's own
    return arrays, {"type": type(wrapped).__name__, "param_groups": state["param_groups"]}


def _plain(value):
    """JSON for the NumPy scalars and arrays that creep into configs."""
    if isinstance(value, (np.generic, np.ndarray)):
        return value.tolist()
    raise TypeError(f"{value!r} of type {type(value).__name__} is not JSON-serializable")


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
    """sha256 hex of every array (the metadata included) but `checksum` itself."""
    digest = hashlib.sha256()
    for name in sorted(set(arrays) - {"checksum"}):
        array = np.asarray(arrays[name], order="C")
        digest.update(f"{name}\0{array.dtype.str}\0{array.shape}\0".encode())
        digest.update(array)
    return digest.hexdigest()


# ---------------------------------------------------------------------------- reading
def latest(directory):
    """The path of the newest checkpoint in `directory`: what `latest` names, or the
    checkpoint of the highest step when `latest` is missing, or broken, or names a file
    that is gone (then with a warning); None when there is none."""
    pointer = os.path.join(directory, POINTER)
    try:
        with open(pointer, "rb") as file:
            name = file.read(256).decode().strip()
    except FileNotFoundError:
        # Files are renamed into place complete, so any of them is a valid checkpoint; the
        # step in the name survives a copy, where write times may not.
        return _by_step(directory)[0] if _by_step(directory) else None
    except (OSError, UnicodeDecodeError) as exc:
        problem = f"cannot be read ({exc})"
    else:
        if not _CHECKPOINT_NAME.fullmatch(name):
            problem = f"holds {name[:60]!r}, not a checkpoint file name"
        elif not os.path.isfile(os.path.join(directory, name)):
            problem = f"names {name}, which does not exist"
        else:
            return os.path.join(directory, name)
    candidates = _by_step(directory)
    if not candidates:
        raise CheckpointError(f"{pointer} {problem}, and {directory} holds no other checkpoint")
    warnings.warn(f"{pointer} {problem}; using {os.path.basename(candidates[0])}, the "
                  f"checkpoint of the highest step", stacklevel=2)
    return candidates[0]


def _by_step(directory):
    """The checkpoint files in `directory`, highest step first."""
    names = os.listdir(directory) if os.path.isdir(directory) else []
    steps = {int(match.group(1)): name for name in names
             if (match := _CHECKPOINT_NAME.fullmatch(name))}
    return [os.path.join(directory, steps[step]) for step in sorted(steps, reverse=True)]


def load_latest(directory):
    """The newest checkpoint in `directory` that loads and verifies, or None when there is
    none yet. Each newer one that does not verify is skipped with a warning, so a job
    requeued after a crash goes on from the last good checkpoint; CheckpointError when
    there are checkpoints and none of them verifies."""
    first = latest(directory)
    if first is None:
        return None
    candidates = [first] + [path for path in _by_step(directory) if path != first]
    failures = []
    for path in candidates:
        try:
            loaded = load(path)
        except CheckpointError as error:
            failures.append(str(error))
            continue
        for failure in failures:
            warnings.warn(f"{failure}; going back to {os.path.basename(path)}", stacklevel=2)
        return loaded
    raise CheckpointError(f"no checkpoint in {directory} verifies: {'; '.join(failures)}")


def load(path):
    """Read and verify a checkpoint; raises CheckpointError when the file is missing,
    damaged, edited, of another format version, or holds a non-finite value."""
    path = os.fspath(path)
    arrays = _read_arrays(path)
    metadata = _metadata(path, arrays)
    for key, array in arrays.items():
        if array.dtype.kind in "fc" and not np.isfinite(array).all():
            raise CheckpointError(f"{path} holds non-finite values in {key}; refusing to use it")
    model_state, optimizer_state = {}, {}
    for key, value in arrays.items():
        section, _, name = key.partition("/")
        if section == "model" and name:
            model_state[name] = value
        elif section == "optimizer" and name.startswith("state/"):
            _, index, state_name = name.split("/", 2) if name.count("/") >= 2 else ("", "", "")
            if not (index.isdecimal() and state_name) or (state_name == "step" and value.ndim):
                raise CheckpointError(f"{path} holds a malformed optimizer array {key!r}")
            entry = optimizer_state.setdefault(int(index), {})
            entry[state_name] = int(value) if state_name == "step" else value
        else:
            raise CheckpointError(f"{path} holds an unexpected array {key!r}")
    optimizer = None
    if metadata["optimizer"] is not None:
        optimizer = {"state": optimizer_state,
                     "param_groups": [_hyper_parameters(g)
                                      for g in metadata["optimizer"]["param_groups"]]}
    return Checkpoint(path, metadata, model_state, optimizer)


def _read_arrays(path):
    """{name: array} of a checkpoint file; CheckpointError for anything that is not a
    sound .npz of numeric arrays."""
    try:
        return read_npz(path)
    except FileNotFoundError:
        raise CheckpointError(f"no checkpoint at {path}") from None
    except UnsoundArrayFile as exc:
        raise CheckpointError(f"{path} is damaged: {exc}") from None
    except Exception as exc:  # zipfile and NumPy's parsers fail in many ways on damage
        # NumPy's own words for a non-archive suggest loading it with pickle: never.
        detail = "" if "pickle" in str(exc) else f": {type(exc).__name__}: {exc}"
        raise CheckpointError(f"{path} is not a readable checkpoint (not a NumPy .npz archive, "
                              f"or truncated or damaged){detail[:200]}") from None


def _metadata(path, arrays):
    """The metadata record, checked: format, version, checksum, then structure. Takes
    `metadata` and `checksum` out of `arrays`."""
    raw, stored = arrays.pop("metadata", None), arrays.pop("checksum", None)
    try:
        metadata = json.loads(raw.tobytes().decode())
    except (AttributeError, ValueError, RecursionError) as exc:
        raise CheckpointError(f"{path} has no readable metadata record: "
                              f"{type(exc).__name__}: {str(exc)[:200]}") from None
    if not isinstance(metadata, dict):
        raise CheckpointError(f"{path} has a metadata record that is not a JSON object")
    version = metadata.get("format_version")
    if metadata.get("format") != FORMAT or version not in READABLE_VERSIONS:
        raise CheckpointError(f"{path} is of format {str(metadata.get('format'))[:60]!r} "
                              f"version {str(version)[:20]}; this numpy_dl reads {FORMAT!r} "
                              f"versions {', '.join(map(str, READABLE_VERSIONS))}")
    if version == 1:  # the checksum covered the arrays alone
        expected, actual = metadata.get("arrays_sha256"), _checksum(arrays)
    else:
        expected = None if stored is None else stored.tobytes().decode("ascii", "replace")
        actual = _checksum({**arrays, "metadata": raw})
    if actual != expected:
        raise CheckpointError(f"{path} is damaged or was edited: its contents do not match "
                              f"the checksum written with them")
    _check_structure(path, metadata)
    _upgrade(metadata)
    return metadata


def _upgrade(metadata):
    """The model config of an older version as this numpy_dl builds that same network:
    a conv model before version 3 had a ReLU after its decoder's FC layer."""
    model = metadata["model"]
    if (metadata["format_version"] < 3 and model["name"] in LEGACY_CONV_MODELS
            and isinstance(model["config"], dict)):
        model["config"] = {**model["config"],
                           **{key: value for key, value in LEGACY_DECODER.items()
                              if key not in model["config"]}}


def _check_structure(path, metadata):
    """CheckpointError unless the record has the fields and types `save` writes (a file
    can carry a valid checksum and still come from a faulty or foreign writer)."""
    def count(value):
        return isinstance(value, int) and not isinstance(value, bool) and value >= 0

    def fail(what):
        raise CheckpointError(f"{path} has malformed metadata: {what}")

    for key in ("epoch", "step", "world_size"):
        if not count(metadata.get(key)):
            fail(f"{key} is {str(metadata.get(key))[:40]}, expected an integer >= 0")
    rng_states = metadata.get("rng_states")
    if not (isinstance(rng_states, list) and len(rng_states) == metadata["world_size"] >= 1
            and all(isinstance(state, dict) for state in rng_states)):
        fail("rng_states is not one generator state per rank")
    model = metadata.get("model")
    if not (isinstance(model, dict) and isinstance(model.get("name"), str)
            and isinstance(model.get("config"), (dict, type(None)))):
        fail("model is not {name, config}")
    optimizer = metadata.get("optimizer")
    if optimizer is not None and not (
            isinstance(optimizer, dict) and isinstance(optimizer.get("type"), str)
            and isinstance(optimizer.get("param_groups"), list)
            and all(isinstance(group, dict) and isinstance(group.get("params"), list)
                    and all(count(index) for index in group["params"])
                    for group in optimizer["param_groups"])):
        fail("optimizer is not {type, param_groups with params}")
    for key in ("data_position", "scheduler", "config"):
        if not isinstance(metadata.get(key), (dict, type(None))):
            fail(f"{key} is not an object")
    missing = [key for key in ("optimizer", "data_position", "scheduler", "config")
               if key not in metadata]
    if missing:
        fail(f"it has no {', '.join(missing)}")


def _hyper_parameters(group):
    """A param group back from JSON: its sequences (betas) were tuples; `params` a list."""
    return {key: tuple(value) if isinstance(value, list) and key != "params" else value
            for key, value in group.items()}


# ---------------------------------------------------------------------------- resuming
def restore(checkpoint, model, optimizer=None, scheduler=None, rank=0, world_size=1):
    """Load a Checkpoint into `model` (and `optimizer`, `scheduler`), and numpy_dl's RNG
    state: rank `rank`'s own when `world_size` is the one that saved (so the run
    continues exactly), otherwise left as it is, with a warning from rank 0. A conv model
    of the other decoder than the checkpoint's (see the module's Versions) is refused."""
    _check_decoder(checkpoint, model)
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
    if len(rng_states) == world_size:
        try:
            ndl_random.set_rng_state(rng_states[rank])
        except (TypeError, ValueError, KeyError) as exc:
            raise CheckpointError(f"{checkpoint.path} holds an unusable random state for rank "
                                  f"{rank}: {str(exc)[:200]}") from None
    elif rank == 0:
        warnings.warn(f"{checkpoint.path} was written by {len(rng_states)} ranks and resumes "
                      f"on {world_size}: the random streams start afresh, so the run is not "
                      f"bitwise the one it would have been", stacklevel=2)


def _check_decoder(checkpoint, model):
    """CheckpointError when the checkpoint's conv model and `model` differ in the activation
    after the decoder's FC layer: the guide's network (none) against the one checkpoints
    before version 3 hold (a ReLU)."""
    saved, own = checkpoint.model_config, getattr(model, "config", None)
    if not (checkpoint.model_name == type(model).__name__ in LEGACY_CONV_MODELS
            and isinstance(saved, dict) and isinstance(own, dict)):
        return
    (key, legacy), = LEGACY_DECODER.items()
    if saved.get(key) != own.get(key):
        def decoder(activation):
            return (f"{key}={activation!r}, FC -> {activation} -> reshape" if activation
                    else "the guide's decoder, FC -> reshape")
        raise CheckpointError(
            f"{checkpoint.path} holds a {checkpoint.model_name} with {decoder(saved.get(key))}"
            f"{' (the decoder of checkpoints before format 3)' if saved.get(key) == legacy else ''}"
            f", but the model given has {decoder(own.get(key))}; rebuild it with "
            f"build_model(checkpoint), or construct it with {key}={saved.get(key)!r}")


def build_model(checkpoint):
    """The model the checkpoint holds, rebuilt with numpy_dl.models.build from its class
    name and constructor arguments, with the checkpoint's weights."""
    if checkpoint.model_config is None:
        raise CheckpointError(f"{checkpoint.path} holds a {checkpoint.model_name} without a "
                              f"`config`, so it cannot be rebuilt from the checkpoint alone; "
                              f"build the model and call restore()")
    from . import models
    try:
        model = models.build(checkpoint.model_name, **checkpoint.model_config)
        model.load_state_dict(checkpoint.model_state)
    except (TypeError, ValueError, KeyError) as exc:
        raise CheckpointError(f"{checkpoint.path} holds a model that cannot be rebuilt: "
                              f"{str(exc)[:300]}") from None
    return model
