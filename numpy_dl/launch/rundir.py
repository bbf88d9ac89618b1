"""The run directory: where a training run writes, and the rules that keep one run from
overwriting another.

    RUN/config.toml        the options (`train --config RUN/config.toml` trains it again)
    RUN/metrics.jsonl      one JSON object per epoch
    RUN/checkpoints/       checkpoint-<step>.npz (the last --keep of them) and `latest`
    RUN/images/            reconstructions-epoch-NNNN.png (inputs above their
                           reconstructions) and, for VAEs, samples-epoch-NNNN.png
    RUN/loss.png           training and validation loss per epoch, drawn at the end

Rank 0 writes everything; decisions about the directory are made on rank 0 and sent to
the others, so the ranks agree even where they do not share a file system.
"""
import json
import os
import time

from ..checkpoint import write_atomically
from ..distributed import checkpoint, on_root
from .errors import UsageError


class RunDirectory:
    def __init__(self, path):
        self.path = os.fspath(path)
        self.config = os.path.join(self.path, "config.toml")
        self.metrics = os.path.join(self.path, "metrics.jsonl")
        self.checkpoints = os.path.join(self.path, "checkpoints")
        self.images = os.path.join(self.path, "images")
        self.loss_curve = os.path.join(self.path, "loss.png")

    def image(self, kind, epoch):
        return os.path.join(self.images, f"{kind}-epoch-{epoch:04d}.png")

    def prepare(self, config_text, epochs_done):
        """Create the directory, write config.toml, and keep the metrics of the epochs
        already done (those of a resumed checkpoint; later ones are trained again)."""
        os.makedirs(self.images, exist_ok=True)
        write_atomically(self.config, config_text.encode())
        kept = [record for record in self.read_metrics() if record["epoch"] <= epochs_done]
        write_atomically(self.metrics, "".join(json.dumps(r) + "\n" for r in kept).encode())

    def append_metrics(self, record):
        with open(self.metrics, "a") as file:
            file.write(json.dumps(record) + "\n")

    def read_metrics(self):
        if not os.path.exists(self.metrics):
            return []
        with open(self.metrics) as file:
            return [json.loads(line) for line in file if line.strip()]


def default_path(config):
    """runs/MODEL-DATASET-YYYYmmdd-HHMMSS, with -2, -3, ... if that exists already."""
    kind = config.dataset.partition(":")[0]
    base = os.path.join("runs", f"{config.model}-{kind}-{time.strftime('%Y%m%d-%H%M%S')}")
    path, number = base, 1
    while os.path.exists(path):
        number += 1
        path = f"{base}-{number}"
    return path


def plan(config, comm):
    """(RunDirectory, checkpoint to resume from or None) for `config`. Collective.

    Without --resume the directory must be new or empty: a finished run is never
    overwritten by accident. --resume auto continues the run in --out from its latest
    checkpoint, or starts it when it has none yet; --resume PATH continues from that
    checkpoint (or run directory) in the checkpoint's own run, or in --out, which must
    then be new or empty like a fresh run's."""
    if config.resume is None:
        path = config.out or comm.bcast_object(default_path(config) if comm.is_main else None)
        on_root(lambda: _require_empty(path), comm)
        return RunDirectory(path), None
    if config.resume == "auto":
        if config.out is None:
            raise UsageError("--resume auto continues the run in --out; give its directory, "
                             "as in --out runs/my-run --resume auto")
        on_root(lambda: check_output_directory(config.out), comm)
        run = RunDirectory(config.out)
        return run, checkpoint.latest(run.checkpoints, comm)
    found = find_checkpoint(config.resume, comm)
    own_run = run_of(found)
    if config.out is not None and os.path.abspath(config.out) != own_run:
        on_root(lambda: _require_empty(config.out), comm)  # a new run branching off
    return RunDirectory(config.out or own_run), found


def _require_empty(path):
    check_output_directory(path)
    if os.path.isdir(path) and os.listdir(path):
        raise UsageError(f"run directory {path} is not empty (it holds "
                         f"{', '.join(sorted(os.listdir(path))[:4])}); pass --resume auto to "
                         f"continue the run in it, or choose a new --out")


def check_output_directory(path):
    """A UsageError unless `path` (an --out) is a directory or can be created as one."""
    if os.path.exists(path) and not os.path.isdir(path):
        raise UsageError(f"--out {path} is a file; expected a directory")
    if os.path.islink(path) and not os.path.exists(path):
        raise UsageError(f"--out {path} is a symbolic link to nothing; expected a directory")
    existing = os.path.abspath(path)
    while not os.path.exists(existing):
        existing = os.path.dirname(existing)
    if not os.path.isdir(existing):
        raise UsageError(f"--out {path} cannot be created: {existing} is a file, not a directory")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise UsageError(f"--out {path} cannot be written: no write permission in {existing}")


def find_checkpoint(path, comm):
    """The checkpoint file `path` names: the file itself, or the latest checkpoint of a
    run directory (or of its checkpoints/ folder). Collective."""
    path = os.fspath(path)
    kind = on_root(lambda: "dir" if os.path.isdir(path) else "file" if os.path.isfile(path)
                   else None, comm)
    if kind is None:
        raise UsageError(f"checkpoint {path} does not exist; expected a checkpoint file or a "
                         f"run directory")
    if kind == "file":
        return path
    for folder in (os.path.join(path, "checkpoints"), path):
        found = checkpoint.latest(folder, comm)
        if found is not None:
            return found
    raise UsageError(f"{path} holds no checkpoint; expected a checkpoint file or a run "
                     f"directory with checkpoints/checkpoint-<step>.npz files")


def run_of(checkpoint_path):
    """The run directory a checkpoint file belongs to (the parent of its checkpoints/)."""
    folder = os.path.dirname(os.path.abspath(checkpoint_path))
    return os.path.dirname(folder) if os.path.basename(folder) == "checkpoints" else folder
