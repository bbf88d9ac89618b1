"""What the launcher prints, and which rank prints it.

Rank 0 alone prints results and progress to stdout, so that N ranks do not print N
copies. Warnings and errors go to stderr from whichever rank has them, prefixed with its
rank when there is more than one, so that a problem on rank 5 is seen and located.
"""
import sys
import warnings


class Console:
    def __init__(self, comm):
        self.comm = comm
        self.prefix = f"[rank {comm.rank}] " if comm.size > 1 else ""

    def say(self, line=""):
        """Print a line of output on rank 0."""
        if self.comm.is_main:
            print(line, flush=True)

    def warn(self, message):
        print(f"{self.prefix}warning: {message}", file=sys.stderr, flush=True)

    def capture_warnings(self):
        """Show Python warnings (e.g. the library's) as this console's one-line warnings."""
        def show(message, category, filename, lineno, file=None, line=None):
            self.warn(f"{message} ({category.__name__})")
        warnings.showwarning = show

    def fail(self, error):
        """Report a LaunchError and return the exit code (or abort the job).

        An agreed error was raised on every rank: rank 0 reports it, naming the rank it
        happened on, and every rank exits with its code. Under MPI, an error on this rank
        alone must end the other ranks too, which only an MPI abort does."""
        origin = f"[rank {error.rank}] " if self.comm.size > 1 and error.rank else ""
        if error.agreed or self.comm.size == 1:
            if self.comm.is_main:
                print(f"{origin}numpy_dl: {error.label}: {error}", file=sys.stderr, flush=True)
            return error.exit_code
        print(f"{self.prefix}numpy_dl: error: {error}; aborting all {self.comm.size} ranks",
              file=sys.stderr, flush=True)
        self.comm.abort(error.exit_code)
        return error.exit_code
