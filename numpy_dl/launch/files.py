"""Writing output files so that a crash never leaves half of one behind, and checking
before any work that they can be written where asked."""
import contextlib
import os

from .errors import UsageError


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


def write_atomically(path, data):
    """Write `data` (bytes) to a temporary file beside `path`, then rename it over `path`:
    readers see the old complete file or the new complete one, never a torn one."""
    directory, name = os.path.split(os.fspath(path))
    temporary = os.path.join(directory, f".{name}.tmp")
    try:
        with open(temporary, "wb") as file:
            file.write(data)
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.remove(temporary)
        raise
