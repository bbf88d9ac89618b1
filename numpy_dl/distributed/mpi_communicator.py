"""The MPI communicator (mpi4py). Imported only when a process runs under an MPI launcher.

It works on a Clone() of COMM_WORLD, so messages a user sends on COMM_WORLD can never be
matched with ours. Arrays move with the buffer-based calls (Allreduce with IN_PLACE,
Bcast: no pickling, no copies); Python objects are pickled with cloudpickle here, so
lambdas and locally defined classes travel too, and mpi4py's own pickler (which a user's
code in the same process may rely on) is left as it is.

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

from .communicator import Communicator
from .watchdog import StallWatchdog

_OPS = {"sum": MPI.SUM, "min": MPI.MIN, "max": MPI.MAX}

# What a rank is waiting in: the collective's name, its number among this communicator's
# collectives (equal on every rank for the same call), the training step, and since when.
Waiting = namedtuple("Waiting", ["name", "number", "step", "since"])


class MPICommunicator(Communicator):
    def __init__(self, stall_timeout):
        super().__init__()
        self._comm = MPI.COMM_WORLD.Clone()
        self.rank, self.size = self._comm.Get_rank(), self._comm.Get_size()
        node = self._comm.Split_type(MPI.COMM_TYPE_SHARED)
        self.ranks_per_node = node.Get_size()
        node.Free()
        self.collectives = 0     # collectives entered so far
        self.waiting = None      # a Waiting record while inside one, else None
        self.watchdog = None
        if stall_timeout > 0:
            self.watchdog = StallWatchdog(self, MPI.COMM_WORLD.Clone(), stall_timeout)

    @contextmanager
    def _collective(self, name):
        self.collectives += 1
        self.waiting = Waiting(name, self.collectives, self.step, time.monotonic())
        try:
            yield
        finally:
            self.waiting = None

    def allreduce_(self, array, op="sum"):
        self._check_buffer("allreduce_", array)
        self._check_op(op)
        with self._collective("allreduce_"):
            self._comm.Allreduce(MPI.IN_PLACE, array, op=_OPS[op])
        return array

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
