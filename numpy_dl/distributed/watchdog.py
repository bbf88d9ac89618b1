"""The stall watchdog: end a job whose ranks wait forever in a collective, and say why.

A rank that waits in a collective far longer than a training step is almost always
waiting for a rank that will never come: it sleeps, loops, or died without MPI noticing.
A blocking MPI collective cannot time out, so a daemon thread on every rank watches its
communicator's `waiting` record. When the wait exceeds the timeout, the thread asks every
rank where it is, over a communicator of its own (each rank's watchdog thread answers,
also while its main thread waits in a collective or sleeps), prints which ranks never
arrived and what they are doing instead, then calls MPI Abort, which ends every rank.
The parity is Horovod's stall inspector.

The lowest waiting rank reports at once; the others give it DEFER seconds (its abort ends
them) so that a job of 64 ranks prints one report, not 63. Asking the other ranks needs
MPI_THREAD_MULTIPLE (mpi4py's default); without it the report names only this rank.
"""
import atexit
import sys
import threading
import time
from collections import namedtuple

from mpi4py import MPI

QUERY, ANSWER = 1, 2
ANSWER_WAIT = 5.0   # seconds to wait for the other ranks' answers
DEFER = 10.0        # seconds a waiting rank that is not the reporter leaves the reporter

# Where a rank is: the collective it waits in (None when not in one), the number of
# collectives it has entered, its training step, and the seconds it has waited.
RankStatus = namedtuple("RankStatus", ["name", "number", "step", "waited"])


class StallWatchdog:
    def __init__(self, comm, status_comm, timeout):
        self.comm, self.timeout = comm, float(timeout)
        self._status_comm = status_comm
        self._poll = min(1.0, self.timeout / 4)
        self._can_ask = MPI.Query_thread() == MPI.THREAD_MULTIPLE
        self._sends = []
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._run, name="numpy_dl stall watchdog",
                                        daemon=True)
        self._thread.start()
        atexit.register(self.stop)  # runs before mpi4py finalizes MPI

    def stop(self):
        """Stop the thread, so that it never calls MPI after MPI_Finalize."""
        self._stopped.set()
        self._thread.join()

    def _run(self):
        while not self._stopped.wait(self._poll):
            if self._can_ask:
                self._answer_queries()
            waiting = self.comm.waiting
            if waiting is not None and time.monotonic() - waiting.since > self.timeout:
                self._report_and_abort(waiting)

    def _my_status(self):
        waiting = self.comm.waiting
        if waiting is None:
            return RankStatus(None, self.comm.collectives, self.comm.step, 0.0)
        return RankStatus(waiting.name, waiting.number, waiting.step,
                          time.monotonic() - waiting.since)

    def _answer_queries(self):
        status = MPI.Status()
        while self._status_comm.iprobe(source=MPI.ANY_SOURCE, tag=QUERY, status=status):
            asker = status.Get_source()
            self._status_comm.recv(source=asker, tag=QUERY)
            self._sends.append(self._status_comm.isend(self._my_status(), dest=asker, tag=ANSWER))
        self._sends = [request for request in self._sends if not request.Test()]

    def _ask_everyone(self):
        """{rank: RankStatus} for this rank and every rank that answered in time."""
        statuses = {self.comm.rank: self._my_status()}
        if not self._can_ask:
            return statuses
        for rank in range(self.comm.size):
            if rank != self.comm.rank:
                self._sends.append(self._status_comm.isend(None, dest=rank, tag=QUERY))
        deadline = time.monotonic() + ANSWER_WAIT
        status = MPI.Status()
        while len(statuses) < self.comm.size and time.monotonic() < deadline:
            self._answer_queries()  # the other waiting ranks are asking us at the same time
            if self._status_comm.iprobe(source=MPI.ANY_SOURCE, tag=ANSWER, status=status):
                source = status.Get_source()
                statuses[source] = self._status_comm.recv(source=source, tag=ANSWER)
            else:
                time.sleep(0.01)
        return statuses

    def _report_and_abort(self, waiting):
        statuses = self._ask_everyone()
        arrived = sorted(rank for rank, s in statuses.items()
                         if s.name == waiting.name and s.number == waiting.number)
        if arrived[0] != self.comm.rank:
            self._stopped.wait(DEFER)
        if self.comm.waiting is not waiting:
            return  # the collective completed after all: a rank was slow, not stuck
        missing = [rank for rank in range(self.comm.size) if rank not in arrived]
        lines = [f"numpy_dl stall watchdog: waited {time.monotonic() - waiting.since:.1f} s "
                 f"(timeout {self.timeout:g} s, NUMPY_DL_STALL_TIMEOUT) in {waiting.name} "
                 f"(collective #{waiting.number}, step {waiting.step})",
                 f"ranks waiting there: {arrived}; ranks that never arrived: {missing}"]
        lines += [f"  rank {rank}: {_describe(statuses.get(rank))}" for rank in missing]
        lines.append("aborting the job")
        sys.stderr.write("".join(f"[rank {self.comm.rank}] {line}\n" for line in lines))
        self.comm.abort(1)


def _describe(status):
    if status is None:
        return "did not answer (it exited or crashed, or native code holds its GIL)"
    if status.name is None:
        return (f"not in a collective; it has entered {status.number} collectives and is "
                f"at step {status.step}")
    return (f"waits in {status.name} (collective #{status.number}, step {status.step}) for "
            f"{status.waited:.1f} s: the ranks do not call the same collectives in order")
