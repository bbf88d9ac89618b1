"""Shared by the launcher's tests (test_launch_*.py)."""
import csv
import json
import os
import re

from PIL import Image

# Small and quick: 180 digits to train on (the rest validate), a small MLP.
QUICK = ["--val-fraction", "0.9", "--batch-size", "32", "--hidden-sizes", "32",
         "--latent-dim", "4", "--epochs", "2"]


def png_size(path):
    """(width, height) of the PNG at `path`, after decoding all of it."""
    with Image.open(path) as image:
        image.load()
        return image.size


def snapshot(directory):
    """{relative path: (size, mtime)} of every file under `directory`."""
    found = {}
    for root, _, names in os.walk(directory):
        for name in names:
            path = os.path.join(root, name)
            found[os.path.relpath(path, directory)] = (os.path.getsize(path),
                                                      os.stat(path).st_mtime_ns)
    return found


def one_line_error(err, code, expected_code, pattern):
    lines = err.splitlines()
    assert code == expected_code and len(lines) == 1, err
    assert lines[0].startswith("numpy_dl: error: "), err
    assert re.search(pattern, lines[0]), lines[0]


def csv_matches_jsonl(run):
    """True when RUN/metrics.csv holds RUN/metrics.jsonl's records, field for field (a
    field a record lacks as an empty cell)."""
    with open(os.path.join(run, "metrics.jsonl")) as file:
        records = [json.loads(line) for line in file]
    with open(os.path.join(run, "metrics.csv"), newline="") as file:
        rows = list(csv.DictReader(file))
    return len(rows) == len(records) and all(
        set(row) >= set(record) and all(float(row[k]) == v for k, v in record.items())
        and all(row[k] == "" for k in set(row) - set(record))
        for row, record in zip(rows, records))


def tensorboard_events(directory):
    """{tag: [(epoch, value)]} of the TensorBoard event files in `directory`, read as
    TensorBoard reads them: the files in name order, each a TFRecord stream (a length and
    the data, each followed by its masked CRC-32C, checked here) of Event protobufs, and a
    restart (a SessionLog START at step s, which a resumed run writes) dropping the events
    from step s on. A scalar's value is its float, an image's the (width, height) of its
    PNG. tensorboardX's own protobufs and CRC decode them."""
    import io
    import struct
    from tensorboardX.proto.event_pb2 import Event, SessionLog
    from tensorboardX.record_writer import masked_crc32c

    found = {}
    for name in sorted(os.listdir(directory)):
        with open(os.path.join(directory, name), "rb") as file:
            data = file.read()
        offset = 0
        while offset < len(data):
            header = data[offset:offset + 8]
            (length,) = struct.unpack("<Q", header)
            body = data[offset + 12:offset + 12 + length]
            crcs = struct.unpack("<I", data[offset + 8:offset + 12]) + struct.unpack(
                "<I", data[offset + 12 + length:offset + 16 + length])
            assert crcs == (masked_crc32c(header), masked_crc32c(body)), name
            offset += 16 + length
            event = Event.FromString(body)
            if event.HasField("session_log") and event.session_log.status == SessionLog.START:
                found = {tag: [(s, v) for s, v in points if s < event.step]
                         for tag, points in found.items()}
            for value in event.summary.value:
                item = value.simple_value
                if value.HasField("image"):
                    with Image.open(io.BytesIO(value.image.encoded_image_string)) as image:
                        item = image.size
                found.setdefault(value.tag, []).append((event.step, item))
    return found
