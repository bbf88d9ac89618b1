"""Writing output files so that a crash never leaves half of one behind."""
import contextlib
import os


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
