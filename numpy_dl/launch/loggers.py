"""The run's metrics for other tools: metrics.csv beside metrics.jsonl, and TensorBoard
event files (--tensorboard). Rank 0 writes both, as it writes metrics.jsonl.

metrics.csv holds the same records as metrics.jsonl, one row per epoch under a header
row, so that a spreadsheet, `csv.DictReader` or `pandas.read_csv` opens it as it is.
metrics.jsonl stays the record the run reads back: on resume both are cut back to the
epochs the checkpoint completed (rundir.prepare). A field that is missing from a record
(validation on an epoch that did not validate) is an empty cell; a record that brings a
field the header lacks rewrites the file from metrics.jsonl with the wider header, so
every row always lines up with the header.

TensorBoard event files come from tensorboardX, which writes them without TensorFlow or
PyTorch: an optional dependency (`pip install 'numpy_dl[tensorboard]'`), imported only
by a run that asks for it, whose absence is a usage error before training starts.
"""
import csv
import io
import os

import numpy as np

from ..checkpoint import write_atomically
from .errors import UsageError

TENSORBOARD_INSTALL = "pip install 'numpy_dl[tensorboard]'"


# ------------------------------------------------------------------ metrics.csv

def csv_text(records):
    """The CSV of `records`: a header of every field, in order of first appearance."""
    fields = list(dict.fromkeys(key for record in records for key in record))
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fields, lineterminator="\n")
    writer.writeheader()
    writer.writerows(records)
    return buffer.getvalue()


def write_csv(path, records):
    """Replace the CSV at `path` with `records` (atomically); without records there is no
    file, since an empty one has no header for a reader to find."""
    if records:
        write_atomically(path, csv_text(records).encode())
    elif os.path.exists(path):
        os.remove(path)


def append_csv(path, record, all_records):
    """Add `record` as a row, or, when the file is new or its header lacks one of the
    record's fields, write the file anew from `all_records()` (which include `record`)."""
    header = csv_header(path)
    if header is None or not set(record) <= set(header):
        write_csv(path, all_records())
        return
    with open(path, "a", newline="") as file:
        csv.DictWriter(file, header, lineterminator="\n").writerow(record)
        file.flush()
        os.fsync(file.fileno())


def csv_header(path):
    """The field names of the CSV at `path`, or None when there is no file."""
    try:
        with open(path, newline="") as file:
            return next(csv.reader(file), None)
    except FileNotFoundError:
        return None


# ------------------------------------------------------------------ TensorBoard

def require_tensorboard():
    """UsageError, naming the install command, when tensorboardX cannot be imported."""
    try:
        import tensorboardX  # noqa: F401
    except ImportError:
        raise UsageError(f"--tensorboard needs the tensorboardX package, which is not "
                         f"installed; install it with {TENSORBOARD_INSTALL}") from None


class TensorBoard:
    """Event files in `directory`: each record's numbers as scalars, and pictures, at the
    epoch as TensorBoard's step.

    A resumed run starts a new file whose first event tells TensorBoard to drop the
    interrupted run's events from `first_epoch` on (they are trained again), as
    metrics.jsonl drops their lines. tensorboardX names a file after the second and the
    host, and overwrites one of the same name, so each file here also has a number of its
    own."""

    def __init__(self, directory, first_epoch):
        from tensorboardX import SummaryWriter
        os.makedirs(directory, exist_ok=True)
        number = sum(".tfevents." in name for name in os.listdir(directory)) + 1
        self.writer = SummaryWriter(directory, purge_step=first_epoch,
                                    filename_suffix=f".{number}")

    def add_record(self, record):
        """Every number of a metrics record but the epoch and step: `train_loss` as
        `train/loss`, `val_kl` as `val/kl`, `lr` and `samples_per_s` as they are. Flushed,
        so that TensorBoard shows each epoch as it ends and a killed job loses none."""
        epoch = record["epoch"]
        for key, value in record.items():
            if key in ("epoch", "step") or isinstance(value, bool) or not isinstance(
                    value, (int, float)):
                continue
            split, _, name = key.partition("_")
            tag = f"{split}/{name}" if split in ("train", "val") else key
            self.writer.add_scalar(tag, value, epoch)
        self.writer.flush()

    def add_image(self, tag, image, epoch):
        """A Pillow image (grey or RGB) at `epoch`."""
        pixels = np.asarray(image.convert("RGB"))
        self.writer.add_image(tag, pixels, epoch, dataformats="HWC")

    def close(self):
        self.writer.close()
