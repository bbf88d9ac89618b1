"""Save a checkpoint, then die (os._exit(9), no cleanup) inside the next save, right
before one of its renames: `checkpoint rename` or `pointer rename`.

    python killed_checkpoint_writer.py DIRECTORY "checkpoint rename"
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from distributed_helpers import small_model  # noqa: E402  (needs the path above)
from numpy_dl.distributed import checkpoint  # noqa: E402

directory, killed_at = sys.argv[1], sys.argv[2]
checkpoint.save(directory, small_model(seed=1), step=1)

renames_before_death = {"checkpoint rename": 0, "pointer rename": 1}[killed_at]
real_replace = os.replace


def replace_then_die(source, target):
    global renames_before_death
    if renames_before_death == 0:
        os._exit(9)
    renames_before_death -= 1
    real_replace(source, target)


os.replace = replace_then_die
checkpoint.save(directory, small_model(seed=2), step=2)
