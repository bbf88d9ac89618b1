"""`numpy_dl.launch.train(**options)`: the `train` command as a Python function.

The options are the command line's (the table in config.py) as keyword arguments with
Python values, `train(model="conv-vae", epochs=3, out="runs/x")`, `hidden_sizes=[64, 32]`,
`resume="auto"`, `deterministic=True`; `config="run.toml"` reads a TOML file under them
as --config does. They are converted and checked as the command line's are, and the run
is the command's own: the same run directory, output, checkpoints and resume, under
`mpirun -n N` too (every rank calls it). Where the command would exit, the function
returns or raises::

    exit 0    returns a TrainResult: run_dir, metrics (the last epoch's metrics.jsonl
              record), checkpoint (the last one written), stopped_early
    exit 2    UsageError, a ValueError: an option, dataset or checkpoint that does not fit
    exit 1    RunError, a RuntimeError: a damaged checkpoint, a file that cannot be written
    exit 3    NonFiniteError, a FloatingPointError: the loss or gradient became non-finite
    exit 75   Stopped: a signal asked the run to stop, after a checkpoint

All are LaunchErrors, whose `exit_code` is the command's. Every rank raises the same
error; one that happened on one rank alone, which the others may be waiting for in a
collective, aborts the MPI job instead, as the command does.
"""
from .. import distributed, runtime
from .config import read_toml
from .console import Console
from .errors import LaunchError, together
from .train import TrainResult, execute

__all__ = ["train", "TrainResult"]


def train(**options):
    """Train as `python -m numpy_dl.launch train` does with these options (see the module
    docstring; `python -m numpy_dl.launch train --help` lists them, as flags); returns a
    TrainResult."""
    runtime.keep_freed_memory()  # as the command: ~30% of a ConvVAE step
    comm = distributed.init()
    console = Console(comm)
    layers = []
    try:
        with together(comm):
            if "config" in options:
                path = options.pop("config")
                layers.append((f"config file {path}", read_toml(path)))
        return execute(layers + [("train()", options)], comm, console)
    except LaunchError as error:
        if not error.agreed and comm.size > 1:
            console.fail(error)  # aborts the job
        raise
