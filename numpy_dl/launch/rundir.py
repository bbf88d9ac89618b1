"""The run directory: where a training run writes, and the rules that keep one run from
overwriting another.

    RUN/config.toml        the options (`train --config RUN/config.toml` trains it again)
    RUN/metrics.jsonl      one JSON object per epoch
    RUN/metrics.csv        the same, one row per epoch under a header (loggers.py)
    RUN/checkpoints/       checkpoint-<step>.npz (the last --keep of them) and `latest`
    RUN/images/            reconstructions-epoch-NNNN.png (inputs above their
                           reconstructions) and, for VAEs, samples-epoch-NNNN.png, every
                           --images-every epochs and at the last
    RUN/loss.png           training and validation loss per epoch (plots.py), drawn with
                           the images
    RUN/logs/rank-<r>.log  each rank's warnings and errors, and rank 0's output
    RUN/tensorboard/       TensorBoard event files (--tensorboard)
    RUN/changes.jsonl      one line per resume that changed options (--allow-changes)
    RUN/.lock              locked by the run while it trains (an OS lock: released when
                           the process ends in any way, so a killed run leaves none held)

Rank 0 writes everything; decisions about the directory are made on rank 0 and sent to
the others, so the ranks agree even where they do not share a file system.
"""
import fcntl
import json
import os
import time

from ..checkpoint import write_atomically
from ..distributed import checkpoint, on_root
from . import loggers
from .errors import UsageError


LOCK = ".lock"


class RunDirectory:
    def __init__(self, path):
        self.path = os.fspath(path)
        self.changes = os.path.join(self.path, "changes.jsonl")
        self._lock = None
        self.config = os.path.join(self.path, "config.toml")
        self.metrics = os.path.join(self.path, "metrics.jsonl")
        self.metrics_csv = os.path.join(self.path, "metrics.csv")
        self.checkpoints = os.path.join(self.path, "checkpoints")
        self.images = os.path.join(self.path, "images")
        self.loss_plot = os.path.join(self.path, "loss.png")
        self.tensorboard = os.path.join(self.path, "tensorboard")

    def image(self, kind, epoch):
        return os.path.join(self.images, f"{kind}-epoch-{epoch:04d}.png")

    def log(self, rank):
        return os.path.join(self.path, "logs", f"rank-{rank}.log")

    def lock(self):
        """Hold the directory's lock for as long as this process lives; UsageError when
        another run holds it. Taken before anything is written; a second train on the
        same directory stops here."""
        os.makedirs(self.path, exist_ok=True)
        file = open(os.path.join(self.path, LOCK), "a")
        try:
            fcntl.flock(file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            file.close()
            raise UsageError(f"run directory {self.path} is in use by another train; wait for "
                             f"it to end, or choose another --out") from None
        self._lock = file

    def unlock(self):
        if self._lock is not None:
            self._lock.close()
            self._lock = None

    def require_no_metrics(self):
        """UsageError when the run has metrics but no checkpoint: starting over would
        discard what it did."""
        if self.read_metrics():
            raise UsageError(f"{self.path} has metrics of a run but no checkpoint in "
                             f"{self.checkpoints} to resume from; restore its checkpoints, or "
                             f"train into a new --out")

    def prepare(self, config_text, saved, changes):
        """Create the (locked) directory's contents: config.toml for a new run; for a
        resumed one keep config.toml (the run's original options), record the options
        that changed, and keep the metrics of the epochs the checkpoint completed (later
        ones are trained again, so none is lost or doubled), in metrics.jsonl and
        metrics.csv alike."""
        os.makedirs(self.images, exist_ok=True)
        if saved is None or not os.path.exists(self.config):
            write_atomically(self.config, config_text.encode())
        if changes:
            record = {"resumed_from": saved.path, "step": saved.step,
                      "changes": {name: list(pair) for name, pair in changes.items()}}
            self._append(self.changes, record)
        # The epochs the checkpoint completed; an epoch it stopped inside, even at its
        # last step, is finished again and writes its line again.
        epochs_done = saved.epoch if saved is not None else 0
        kept = [record for record in self.read_metrics() if record["epoch"] <= epochs_done]
        write_atomically(self.metrics, "".join(json.dumps(r) + "\n" for r in kept).encode())
        loggers.write_csv(self.metrics_csv, kept)

    def append_metrics(self, record):
        """Add an epoch's record to metrics.jsonl, then to metrics.csv."""
        self._append(self.metrics, record)
        loggers.append_csv(self.metrics_csv, record, self.read_metrics)

    @staticmethod
    def _append(path, record):
        """Add a JSON line and fsync, so a line written before a checkpoint is on disk
        before the checkpoint is."""
        with open(path, "a") as file:
            file.write(json.dumps(record, default=str) + "\n")
            file.flush()
            os.fsync(file.fileno())

    def read_metrics(self):
        """The complete records of metrics.jsonl (a line cut short by a crash is left out)."""
        if not os.path.exists(self.metrics):
            return []
        records = []
        with open(self.metrics, "rb") as file:
            for line in file:
                try:
                    record = json.loads(line)
                except ValueError:
                    continue
                if isinstance(record, dict) and isinstance(record.get("epoch"), int):
                    records.append(record)
        return records


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
    """(RunDirectory, Checkpoint to resume from or None) for `config`. Collective; nothing
    is written (the run locks the directory when it starts writing, `lock`).

    Without --resume the directory must be new or empty: a finished run is never
    overwritten by accident. --resume auto continues the run in --out from its newest
    checkpoint that verifies, or starts it when it has neither checkpoints nor metrics
    yet; --resume PATH continues from that checkpoint (or run directory) in the
    checkpoint's own run, or in --out, which must then be new or empty like a fresh run's."""
    if config.resume is None:
        path = config.out or comm.bcast_object(default_path(config) if comm.is_main else None)
        on_root(lambda: _require_empty(path), comm)
        return RunDirectory(path), None
    if config.resume == "auto":
        if config.out is None:
            raise UsageError("--resume auto continues the run in --out; give its directory, "
                             "as in --out runs/my-run --resume auto")
        run = RunDirectory(config.out)
        on_root(lambda: check_output_directory(config.out), comm)
        saved = checkpoint.load_latest(run.checkpoints, comm)
        if saved is None:
            on_root(run.require_no_metrics, comm)
        return run, saved
    found = find_checkpoint(config.resume, comm)
    own_run = run_of(found)
    if config.out is not None and os.path.abspath(config.out) != own_run:
        on_root(lambda: _require_empty(config.out), comm)  # a new run branching off
    return RunDirectory(config.out or own_run), checkpoint.load(found, comm)


def _require_empty(path):
    check_output_directory(path)
    held = sorted(set(os.listdir(path)) - {LOCK}) if os.path.isdir(path) else []
    if held:
        raise UsageError(f"run directory {path} is not empty (it holds "
                         f"{', '.join(held[:4])}); pass --resume auto to "
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
