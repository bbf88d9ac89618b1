"""How a command fails: one line and an exit code, and never a rank left waiting.

Exit codes: 0 done; 1 `RunError`, the work failed (a damaged checkpoint, a file that
cannot be written); 2 `UsageError`, what the user asked for cannot be done (an option, a
config file, a dataset or a checkpoint that does not fit); 3 `NonFiniteError`, training met
a non-finite loss or gradient; 75 `Stopped`, a signal stopped the run after it wrote a
checkpoint (requeue and resume); 130, a Ctrl-C after a first request aborted it at once. Each ends the
command with one line instead of a traceback. Any other exception
is a bug and keeps its traceback; under MPI the distributed layer's hook prints it with
the rank and aborts the job.

Under MPI one rank may fail alone: only rank 0 reads a checkpoint, one node lacks a data
directory. A rank that simply exited would leave the others waiting forever in their next
collective, so every step that can fail runs inside `together(comm)`, after which either
no rank or every rank raises; such an error is `agreed` and ends all ranks with the same
code while rank 0 alone reports it. An error that escapes outside `together` (rank 0
failing to write an image mid-training) aborts the whole job instead.
"""
from contextlib import contextmanager

from ..data.datasets import DatasetError
from ..distributed import raise_together
from ..checkpoint import CheckpointError


class LaunchError(Exception):
    """A failure the launcher reports as one line; `rank` is where it happened."""
    exit_code = 1
    label = "error"

    def __init__(self, message):
        super().__init__(message)
        self.rank = None
        self.agreed = False


class UsageError(LaunchError, ValueError):
    """The command asks for something that cannot be done; the user changes the command.
    (A ValueError, as a bad argument of `numpy_dl.launch.train()` should be.)"""
    exit_code = 2


class RunError(LaunchError, RuntimeError):
    """The work failed while being done."""
    exit_code = 1


class NonFiniteError(LaunchError, FloatingPointError):
    """Training met a non-finite loss or gradient and stopped before applying it; the last
    good checkpoint is the one to go back to (with a lower --lr and --allow-changes, say)."""
    exit_code = 3


class Stopped(LaunchError):
    """A signal asked the run to stop, and it did so after writing a checkpoint of the step
    it reached: requeue the job, and `--resume auto` goes on from there."""
    exit_code = 75
    label = "stopped"


def _as_launch_error(error):
    """Other failures, as the launcher reports them: a dataset that cannot be used is a
    usage error; a damaged or foreign checkpoint, or a file that cannot be written, a
    runtime one."""
    if isinstance(error, LaunchError):
        return error
    if isinstance(error, DatasetError):
        return UsageError(str(error))
    if isinstance(error, OSError) and error.filename and error.strerror:
        return RunError(f"cannot write or read {error.filename}: {error.strerror}")
    return RunError(str(error))


@contextmanager
def together(comm):
    """Collective: run the block on every rank; if it raises a LaunchError (or a
    DatasetError, CheckpointError or OSError) on any rank, raise a LaunchError on every
    rank. Inside the block every rank must make the same collective calls.

    Each failing rank raises its own error, the others the lowest failing rank's; all are
    marked `agreed`, and carry the rank they happened on."""
    error = None
    try:
        yield
    except (LaunchError, DatasetError, CheckpointError, OSError) as exc:
        error = _as_launch_error(exc)
        error.rank = comm.rank
    try:
        raise_together(comm, error)
    except LaunchError as exc:
        exc.agreed = True
        raise exc from None
