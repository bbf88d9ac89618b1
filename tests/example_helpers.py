"""Running a script of examples/autoencoders/ as a user does, in one process or under
mpirun, for the tests of the examples (tests/test_example_*.py)."""
import os
import re
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from distributed_helpers import mpirun_command

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXAMPLES = os.path.join(ROOT, "examples", "autoencoders")


def run_example(name, *options, out, ranks=1, timeout=300):
    """`python examples/autoencoders/NAME.py OPTIONS --out OUT` (under `mpirun -n ranks`
    when ranks > 1) from the repository root; its standard output, after checking that it
    exited 0."""
    command = [sys.executable, os.path.join(EXAMPLES, f"{name}.py"), *options, "--out", str(out)]
    if ranks > 1:
        command = mpirun_command(ranks) + command
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, f"{name}.py exited {done.returncode}:\n{done.stdout}\n{done.stderr}"
    return done.stdout


def one_process_run(name, *options):
    """A module-scoped fixture of the example run once in one process with `options`:
    (its standard output, its output folder), shared by the tests of one script."""
    @pytest.fixture(scope="module")
    def one_process(tmp_path_factory):
        out = tmp_path_factory.mktemp(name)
        return run_example(name, *options, out=out), out
    return one_process


def grey_pixels(path):
    """A saved picture as a float array of grey levels (rows, columns), for checks of its
    size and that it is not blank."""
    with Image.open(path) as image:
        return np.asarray(image.convert("L"), dtype=float)


def printed_number(output, label):
    """The number printed after `label` (and an optional colon) in an example's output."""
    match = re.search(re.escape(label) + r":?\s*(-?[0-9.]+(?:e-?[0-9]+)?)", output)
    assert match, f"no {label!r} in the output:\n{output}"
    return float(match.group(1))
