"""What the launcher prints, which rank prints it, and each rank's log file.

Rank 0 alone prints results and progress to stdout, so that N ranks do not print N
copies; `quiet` (train --quiet) silences that output, leaving warnings and errors. Warnings
and errors go to stderr from whichever rank has them, prefixed with its rank when there
is more than one, so that a problem on rank 5 is seen and located.

A training run also keeps every rank's lines in a file of its own, RUN/logs/rank-<r>.log
(as torchrun's --log-dir does): its warnings and errors, and on rank 0 its output too,
quiet or not. Under mpirun the ranks' stderr is interleaved in one stream, or lost with
the job's terminal; the files keep what each rank said, appended to by every resume.
Lines said before the run directory is known (a warning while the checkpoint loads) are
kept until the file opens. A file that cannot be written is reported once and the run
goes on without it: the log is a record, not part of the run's results.
"""
import os
import socket
import sys
import time
import warnings

import numpy_dl


class Console:
    def __init__(self, comm):
        self.comm = comm
        self.prefix = f"[rank {comm.rank}] " if comm.size > 1 else ""
        self.quiet = False
        self.log_path = None
        self._unlogged = []  # lines said before the log file was opened; None: no log

    @property
    def shows_output(self):
        """True on the rank that prints output, unless quiet."""
        return self.comm.is_main and not self.quiet

    def say(self, line=""):
        """A line of output: printed on rank 0 unless quiet, and kept in its log."""
        if self.comm.is_main:
            if not self.quiet:
                print(line, flush=True)
            self._log(line)

    def warn(self, message):
        line = f"{self.prefix}warning: {message}"
        print(line, file=sys.stderr, flush=True)
        self._log(line)

    def log_to(self, path):
        """Append this rank's lines to the file `path` from now on, after a line naming
        the process and the lines said so far."""
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "a"):  # an OSError here is the caller's: the run cannot start
            pass
        self.log_path = path
        self._log(f"--- numpy_dl {numpy_dl.__version__}, rank {self.comm.rank} of "
                  f"{self.comm.size}: process {os.getpid()} on {socket.gethostname()}, "
                  f"started {time.strftime('%Y-%m-%d %H:%M:%S %z')}")
        for line in self._unlogged:
            self._log(line)
        self._unlogged = []

    def _log(self, line):
        if self.log_path is None:  # not open yet, or given up (no lines kept then)
            if self._unlogged is not None:
                self._unlogged.append(line)
            return
        try:
            with open(self.log_path, "a") as file:
                file.write(line + "\n")
        except OSError as error:
            path, self.log_path = self.log_path, None
            self._unlogged = None
            print(f"{self.prefix}warning: cannot write {path} ({error.strerror}); this "
                  f"rank's log ends here", file=sys.stderr, flush=True)

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
            line = f"{origin}numpy_dl: {error.label}: {error}"
            if self.comm.is_main:
                print(line, file=sys.stderr, flush=True)
            self._log(line)  # every rank's log says why it ended
            return error.exit_code
        line = f"{self.prefix}numpy_dl: error: {error}; aborting all {self.comm.size} ranks"
        print(line, file=sys.stderr, flush=True)
        self._log(line)
        self.comm.abort(error.exit_code)
        return error.exit_code
