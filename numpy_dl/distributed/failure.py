"""Abort the whole job when one rank dies of an uncaught exception.

Without this, the failing rank's interpreter exits while the others wait forever in the
next collective. The hook prints the traceback with every line prefixed by the rank (so
it stands out among N interleaved outputs) and calls the communicator's abort, which
under MPI ends every rank with a non-zero exit code within seconds.
"""
import sys
import traceback


def install_failure_handlers(comm):
    """Make an uncaught exception on this rank print its traceback and abort the job.

    `init()` calls this under MPI; calling it again is harmless. A single-process job
    keeps Python's own handling (the exception already ends it).
    """
    if comm.size == 1 or getattr(sys.excepthook, "numpy_dl_comm", None) is comm:
        return

    def abort_on_exception(exc_type, exc, tb):
        text = "".join(traceback.format_exception(exc_type, exc, tb))
        prefix = f"[rank {comm.rank}] "
        sys.stderr.write("".join(prefix + line for line in text.splitlines(keepends=True)))
        sys.stderr.write(f"{prefix}uncaught exception: aborting all {comm.size} ranks\n")
        comm.abort(1)

    abort_on_exception.numpy_dl_comm = comm
    sys.excepthook = abort_on_exception
