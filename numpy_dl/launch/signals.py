"""Signals as requests: SIGTERM, SIGUSR1 and SIGINT ask a training run to stop cleanly.

A batch system stops a job with a signal: Slurm sends SIGTERM at preemption and at the
time limit (and SIGUSR1 ahead of it when asked with `--signal`), and a person presses
Ctrl-C. If the signal simply ended each rank, the ranks it reached first would leave the
others waiting in a collective, and the work since the last checkpoint would be lost. So
the handler only records the request; the training loop reads it at the next step
boundary, where every rank agrees on it in the small all-reduce it makes every step,
rank 0 writes a checkpoint of that step, and every rank exits with the code `Stopped`
documents (75: requeue and resume with `--resume auto`).

A SIGINT after an earlier request means "now": the job is aborted at once (exit code
130), checkpoint or not, as Ctrl-C twice does in torchrun and mpirun. Python runs the
handler when the main thread next runs Python code, so a rank blocked inside an MPI call
(a job that hangs) is ended by mpirun's own second Ctrl-C or by the stall watchdog.
"""
import signal

REQUESTS = (signal.SIGTERM, signal.SIGUSR1, signal.SIGINT)
ABORT_CODE = 130


class StopRequests:
    """Context manager that records the first stop signal (`self.signal`, a number, 0
    while none came) instead of letting it end the process."""

    def __init__(self, comm):
        self.comm = comm
        self.signal = 0
        self._previous = {}

    def __enter__(self):
        for number in REQUESTS:
            self._previous[number] = signal.signal(number, self._record)
        return self

    def __exit__(self, *exc_info):
        for number, handler in self._previous.items():
            signal.signal(number, handler)
        return False

    def _record(self, number, frame):
        if number == signal.SIGINT and self.signal:
            self.comm.abort(ABORT_CODE)
        self.signal = self.signal or number


def name(number):
    return signal.Signals(int(number)).name
