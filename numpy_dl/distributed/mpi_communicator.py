"""The MPI communicator (mpi4py). Imported only when a process runs under an MPI launcher.

It works on a Clone() of COMM_WORLD, so messages a user sends on COMM_WORLD can never be
matched with ours. Arrays move with the buffer-based calls (Allreduce with IN_PLACE,
Bcast: no pickling, no copies); Python objects are pickled with cloudpickle here, so
lambdas and locally defined classes travel too, and mpi4py's own pickler (which a user's
code in the same process may rely on) is left as it is.

float16 arrays are summed by a user-defined op that adds 16-bit words as float16 with
NumPy, which rounds each pairwise sum to float16 as MPI's own float16 type does, on every
MPI (Open MPI 4.1's mpi4py has no float16 type at all), and faster: MPICH's and Open MPI
5's float16 sums slow down about 8x on subnormal values, which gradients divided by the
number of ranks often are (1.1M values: 84 ms against NumPy's 7-11 ms at -n 2). Their
minimum and maximum take MPI's own type, where there is one.

Every collective records "entered collective #n (name) at step s at time t" while it
waits, which the stall watchdog reads from its own thread.
"""
import sys
import time
from collections import namedtuple
from contextlib import contextmanager

import cloudpickle
import numpy as np
from mpi4py import MPI
from mpi4py.util import dtlib

from .communicator import Communicator
from .watchdog import StallWatchdog

_OPS = {"sum": MPI.SUM, "min": MPI.MIN, "max": MPI.MAX}


def has_float16():
    """Whether this MPI library has a float16 datatype that mpi4py maps NumPy's to."""
    try:
        dtlib.from_numpy_dtype(np.float16)
        return True
    except (KeyError, ValueError):
        return False


def _add_float16_words(source, target, datatype):
    """MPI user op: target += source, both buffers of float16 values sent as 16-bit words."""
    target_values = np.frombuffer(target, dtype=np.float16)
    target_values += np.frombuffer(source, dtype=np.float16)

# What a rank is waiting in: the collective's name, its number among this communicator's
# collectives (equal on every rank for the same call), the training step, and since when.
Waiting = namedtuple("Waiting", ["name", "number", "step", "since"])


class PendingCollective:
    """A non-blocking collective in flight. `test()` lets MPI progress it and says whether
    it is done; `wait()` blocks until it is, recorded in `comm.waiting` for the stall
    watchdog as a blocking collective is."""

    def __init__(self, comm, request, started):
        self._comm, self._request, self._started = comm, request, started
        self.done = False

    def test(self):
        if not self.done:
            self.done = self._request.Test()
        return self.done

    def wait(self):
        if self.done:
            return
        self._comm.waiting = self._started._replace(since=time.monotonic())
        try:
            self._request.Wait()
        finally:
            self._comm.waiting = None
        self.done = True


class MPICommunicator(Communicator):
    def __init__(self, stall_timeout, world=None):
        super().__init__()
        self._comm = MPI.COMM_WORLD.Clone() if world is None else world
        self.rank, self.size = self._comm.Get_rank(), self._comm.Get_size()
        node = self._comm.Split_type(MPI.COMM_TYPE_SHARED)
        self.ranks_per_node = node.Get_size()
        node.Free()
        self._reporter = self  # whose `waiting` record the stall watchdog reads
        # float16 minima and maxima go through MPI's own type when there is one
        self.native_float16 = has_float16()
        self._float16_op = None
        self.collectives = 0     # collectives entered so far
        self.waiting = None      # a Waiting record while inside one, else None
        self.watchdog = None
        if stall_timeout > 0:
            self.watchdog = StallWatchdog(self, MPI.COMM_WORLD.Clone(), stall_timeout)

    def duplicate(self):
        """Collective: a communicator of the same ranks whose collectives never match this
        one's (MPI_Comm_dup), for collectives a library keeps in flight while the user's
        own run (DistributedOptimizer's overlap). Its waits show in this communicator's
        `waiting` record, which the stall watchdog reads."""
        with self._collective("duplicate"):
            twin = MPICommunicator(stall_timeout=0, world=self._comm.Dup())
        twin._reporter = self._reporter
        twin.native_float16 = self.native_float16
        return twin

    @contextmanager
    def _collective(self, name):
        self.collectives += 1
        reporter = self._reporter
        reporter.waiting = Waiting(name, self.collectives, reporter.step, time.monotonic())
        try:
            yield
        finally:
            reporter.waiting = None

    def allreduce_(self, array, op="sum"):
        self._check_buffer("allreduce_", array)
        self._check_op(op)
        with self._collective("allreduce_"):
            if self._as_words(array, op):
                self._allreduce_float16_words(array, op)
            else:
                self._comm.Allreduce(MPI.IN_PLACE, array, op=_OPS[op])
        return array

    def iallreduce_(self, array, op="sum"):
        self._check_buffer("iallreduce_", array)
        self._check_op(op)
        self.collectives += 1
        started = Waiting("iallreduce_", self.collectives, self._reporter.step, None)
        if self._as_words(array, op):
            request = self._comm.Iallreduce(MPI.IN_PLACE, self._float16_words(array, op),
                                            op=self._float16_op)
        else:
            request = self._comm.Iallreduce(MPI.IN_PLACE, array, op=_OPS[op])
        return PendingCollective(self._reporter, request, started)

    def _as_words(self, array, op):
        """Whether `array` goes through the float16 user op (see the module docstring)."""
        return array.dtype == np.float16 and (op == "sum" or not self.native_float16)

    def _allreduce_float16_words(self, array, op):
        words = self._float16_words(array, op)
        self._comm.Allreduce(MPI.IN_PLACE, words, op=self._float16_op)

    def _float16_words(self, array, op):
        """`array` as the 16-bit words that the user op adds as float16 (see the module
        docstring)."""
        if op != "sum":
            raise ValueError(f"allreduce_: this MPI has no float16 type; only op='sum' is "
                             f"implemented for float16 arrays, got op={op!r}")
        if self._float16_op is None:
            self._float16_op = MPI.Op.Create(_add_float16_words, commute=True)
        return [array.view(np.uint16), MPI.UINT16_T]

    def broadcast_(self, array, root=0):
        self._check_buffer("broadcast_", array)
        self._check_root("broadcast_", root)
        with self._collective("broadcast_"):
            self._comm.Bcast(array, root=root)
        return array

    def exchange_(self, send, receive, partner):
        self._check_exchange(send, receive, partner)
        with self._collective("exchange_"):
            self._comm.Sendrecv(np.ascontiguousarray(send), dest=partner, recvbuf=receive,
                                source=partner)
        return receive

    def bcast_object(self, obj, root=0):
        self._check_root("bcast_object", root)
        with self._collective("bcast_object"):
            sent = cloudpickle.dumps(obj) if self.rank == root else None
            return cloudpickle.loads(self._comm.bcast(sent, root=root))

    def gather_object(self, obj, root=0):
        self._check_root("gather_object", root)
        with self._collective("gather_object"):
            parts = self._comm.gather(cloudpickle.dumps(obj), root=root)
        return None if parts is None else [cloudpickle.loads(part) for part in parts]

    def allgather_object(self, obj):
        with self._collective("allgather_object"):
            parts = self._comm.allgather(cloudpickle.dumps(obj))
        return [cloudpickle.loads(part) for part in parts]

    def barrier(self):
        with self._collective("barrier"):
            self._comm.Barrier()

    def abort(self, code=1):
        sys.stdout.flush()
        sys.stderr.flush()
        self._comm.Abort(code)
