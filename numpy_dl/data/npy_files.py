"""Reading .npy and .npz files that may be damaged or hostile, without surprises.

`np.load` trusts a file's header: a header that claims a shape of 10^9 rows makes it
allocate that much before it notices the bytes are not there, and an object dtype would
need pickle. These readers check each array's header first: a number dtype (no objects,
strings, dates or times) and a size that the bytes in the file can hold. Then NumPy reads
it, with allow_pickle=False. Datasets and checkpoints are read through here.
"""
import math
import zipfile

import numpy as np

NUMBER_KINDS = "biufc"  # bool, signed and unsigned integers, floats, complex


class UnsoundArrayFile(ValueError):
    """An array whose header does not fit its file: a dtype that is not a number, or a
    shape larger than the bytes present."""


def read_npz(path):
    """{name: array} of an .npz file (names without the .npy suffix)."""
    with zipfile.ZipFile(path) as archive:
        arrays = {}
        for member in archive.infolist():
            if not member.filename.endswith(".npy"):
                raise UnsoundArrayFile(f"member {member.filename[:60]!r} is not an array")
            with archive.open(member) as file:
                _check_header(file, member.file_size, member.filename[:60])
            with archive.open(member) as file:
                arrays[member.filename[:-len(".npy")]] = np.lib.format.read_array(
                    file, allow_pickle=False)
        return arrays


def read_npy(path):
    """The array of an .npy file."""
    with open(path, "rb") as file:
        _check_file(file, path)
        return np.lib.format.read_array(file, allow_pickle=False)


def map_npy(path):
    """The array of an .npy file, memory-mapped read-only (see data/mapped.py)."""
    with open(path, "rb") as file:
        _check_file(file, path)
    return np.load(path, mmap_mode="r", allow_pickle=False)


def _check_file(file, path):
    """Check the header of the .npy file open as `file` against its size; rewinds it."""
    file.seek(0, 2)
    size = file.tell()
    file.seek(0)
    _check_header(file, size, str(path))
    file.seek(0)


def _check_header(file, size, name):
    version = np.lib.format.read_magic(file)
    if version not in ((1, 0), (2, 0)):
        raise UnsoundArrayFile(f"array {name!r} has .npy version {version}")
    read_header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                   else np.lib.format.read_array_header_2_0)
    shape, _, dtype = read_header(file)
    if dtype.hasobject or dtype.kind not in NUMBER_KINDS:
        raise UnsoundArrayFile(f"array {name!r} has dtype {dtype}, not a number type")
    if math.prod(shape) * dtype.itemsize > size:
        raise UnsoundArrayFile(f"array {name!r} claims shape {shape} "
                               f"({math.prod(shape) * dtype.itemsize:,} bytes), more than the "
                               f"{size:,} bytes it holds")
