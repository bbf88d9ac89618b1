"""Shared by the launcher's tests (test_launch_*.py)."""
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
