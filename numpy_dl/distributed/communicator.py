"""The communicator interface, its single-process implementation, and `init()`.

Training code talks to one interface whether it runs under `mpirun -n 64` or alone on a
laptop; `init()` picks the implementation. The single-process one has the same methods
(and checks its arguments the same way), so a script debugged alone behaves the same way
under MPI, and mpi4py is never imported when it is not needed.

Interface (both implementations)::

    rank, size, is_main (rank 0)
    ranks_per_node          ranks sharing this node (for BLAS threads = cores / this)
    step                    updates taken: DistributedOptimizer advances it, a resumed run
                            may set it; the stall watchdog and replica check report it
    allreduce_(array, op="sum"|"min"|"max")  in place, returns `array`
    iallreduce_(array, op="sum") -> request  the same, non-blocking: `array` holds the
                                             result once `request.wait()` returns (or
                                             `request.test()` says True); until then
                                             leave it alone
    broadcast_(array, root=0)                in place, returns `array`
    exchange_(send, receive, partner)        send `send` to rank `partner` and receive its
                                             array into `receive` (the same shape), returns
                                             `receive`
    duplicate() -> communicator              collective: the same ranks, collectives of
                                             its own (which never match this one's)
    bcast_object(obj, root=0) -> obj         any cloudpickle-able object
    gather_object(obj, root=0) -> list on root, None elsewhere
    allgather_object(obj) -> list of every rank's obj, on every rank
    barrier(), abort(code=1)
"""
import os
import sys

import cloudpickle
import numpy as np

from .. import runtime
from .failure import install_failure_handlers

REDUCE_OPS = ("sum", "min", "max")
DEFAULT_STALL_TIMEOUT = 300.0

_world = None


class MPIJobError(RuntimeError):
    """The launcher started several tasks, but they did not form one MPI job (or cannot
    use MPI at all). `task` is this process's index among the launcher's tasks, so that
    task 0 alone reports it."""

    def __init__(self, message, task):
        super().__init__(message)
        self.task = task


class Communicator:
    """What both implementations share: argument checks and `is_main`."""
    rank = 0
    size = 1
    ranks_per_node = 1

    def __init__(self):
        self.step = 0

    @property
    def is_main(self):
        """True on rank 0, the rank that writes the files and prints."""
        return self.rank == 0

    def _check_buffer(self, call, array):
        if not isinstance(array, np.ndarray):
            raise TypeError(f"{call} needs a NumPy array, got {type(array).__name__}")
        if not (array.flags.c_contiguous and array.flags.writeable):
            raise ValueError(f"{call} works in place and needs a writeable C-contiguous array; "
                             f"pass np.ascontiguousarray(x) and copy the result back")

    def _check_root(self, call, root):
        if not 0 <= root < self.size:
            raise ValueError(f"{call}: root must be a rank in [0, {self.size}), got {root}")

    def _check_exchange(self, send, receive, partner):
        self._check_buffer("exchange_", receive)
        if not isinstance(send, np.ndarray) or send.shape != receive.shape \
                or send.dtype != receive.dtype:
            raise ValueError("exchange_: send and receive must be arrays of one shape and dtype")
        if not 0 <= partner < self.size or partner == self.rank:
            raise ValueError(f"exchange_: partner must be another rank in [0, {self.size}), "
                             f"got {partner}")

    def _check_op(self, op):
        if op not in REDUCE_OPS:
            raise ValueError(f"allreduce_: op must be one of {REDUCE_OPS}, got {op!r}")

    def __repr__(self):
        return f"{type(self).__name__}(rank={self.rank}, size={self.size})"


class DoneRequest:
    """The request of a non-blocking collective that was complete when it started."""

    def test(self):
        return True

    def wait(self):
        pass


class SingleProcessCommunicator(Communicator):
    """A world of one rank: every collective is the identity."""

    def allreduce_(self, array, op="sum"):
        self._check_buffer("allreduce_", array)
        self._check_op(op)
        return array

    def iallreduce_(self, array, op="sum"):
        self._check_buffer("iallreduce_", array)
        self._check_op(op)
        return DoneRequest()

    def duplicate(self):
        return SingleProcessCommunicator()

    def broadcast_(self, array, root=0):
        self._check_buffer("broadcast_", array)
        self._check_root("broadcast_", root)
        return array

    def bcast_object(self, obj, root=0):
        self._check_root("bcast_object", root)
        return obj

    def exchange_(self, send, receive, partner):
        """A world of one has no other rank to exchange with: always a ValueError."""
        self._check_exchange(send, receive, partner)

    def gather_object(self, obj, root=0):
        self._check_root("gather_object", root)
        return [obj]

    def allgather_object(self, obj):
        return [obj]

    def barrier(self):
        pass

    def abort(self, code=1):
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


def stall_timeout_from_env():
    """Seconds from NUMPY_DL_STALL_TIMEOUT (default 300; 0 turns the watchdog off)."""
    text = os.environ.get("NUMPY_DL_STALL_TIMEOUT", "")
    if not text:
        return DEFAULT_STALL_TIMEOUT
    try:
        return float(text)
    except ValueError:
        raise ValueError(f"NUMPY_DL_STALL_TIMEOUT must be a number of seconds, got {text!r}") from None


def init(stall_timeout=None, abort_on_exception=True):
    """The world communicator: MPI when an MPI launcher started this process (and
    NUMPY_DL_NO_MPI is not set), otherwise the single-process one.

    The first call creates it and later calls return the same object (their arguments are
    then ignored), so library code can call `init()` wherever it needs the communicator. Under MPI the first call also starts
    the stall watchdog (`stall_timeout` seconds, default NUMPY_DL_STALL_TIMEOUT or 300; 0 or
    less turns it off), with `abort_on_exception` installs the hook that turns an uncaught
    exception on any rank into an abort of the whole job, and gives each rank its share of
    the node's cores as BLAS threads (cores per node / ranks per node) unless
    OMP_NUM_THREADS, OPENBLAS_NUM_THREADS, MKL_NUM_THREADS or BLIS_NUM_THREADS is set.
    """
    global _world
    if _world is not None:
        return _world
    task, tasks = runtime.launcher_tasks()
    if not runtime.started_by_mpi():
        world = SingleProcessCommunicator()
    else:
        runtime.progress_mpi_in_background()
        try:
            from .mpi_communicator import MPICommunicator  # imports mpi4py: MPI starts
        except ImportError as error:
            raise MPIJobError(f"started by an MPI launcher, but mpi4py cannot be imported "
                              f"({error}); install it (pip install 'numpy_dl[mpi]', or build "
                              f"mpi4py against your MPI), or set NUMPY_DL_NO_MPI=1", task) from None
        timeout = stall_timeout_from_env() if stall_timeout is None else float(stall_timeout)
        world = MPICommunicator(stall_timeout=timeout)
    if tasks > world.size and runtime.started_by_torchrun():
        raise MPIJobError(f"started by torchrun ({tasks} processes), which starts no MPI, so "
                          f"the processes cannot train together: numpy_dl's ranks talk over "
                          f"MPI; start them with mpirun -n {tasks} (srun --mpi=pmi2 or "
                          f"--mpi=pmix under Slurm)", task)
    if tasks > world.size:
        raise MPIJobError(f"{tasks} tasks were started, but they did not form one MPI job "
                          f"(this one sees a world of {world.size}): under Slurm pass "
                          f"--mpi=pmi2 (MPICH, Intel MPI) or --mpi=pmix (Open MPI) to srun, "
                          f"or start the job with the mpirun of the MPI that mpi4py was built "
                          f"with", task)
    _world = world
    if world.size > 1:
        runtime.share_cores(world.ranks_per_node)
        if abort_on_exception:
            install_failure_handlers(world)
    return _world


def resolve(comm):
    """`comm`, or the world communicator when it is None (every `comm=None` argument)."""
    return init() if comm is None else comm


def allgather_object(obj, comm=None):
    """Collective: the list of every rank's `obj` (any cloudpickle-able object), in rank
    order, on every rank; Horovod's `hvd.allgather_object`."""
    return resolve(comm).allgather_object(obj)


def raise_together(comm, error=None):
    """Collective: if any rank passes an exception, raise one on every rank.

    Used where one rank may fail alone (rank 0 reading a file, one rank's model not
    matching), so that no rank walks on into a collective the others have left. A rank
    raises its own error; the others raise the lowest failing rank's.
    """
    errors = comm.allgather_object(None if error is None else portable(error))
    first = next((e for e in errors if e is not None), None)
    if error is not None:
        raise error
    if first is not None:
        raise first


def portable(error):
    """`error`, or a RuntimeError with its text when it would not survive pickling (a
    failure inside the gather itself would leave the other ranks waiting)."""
    try:
        cloudpickle.loads(cloudpickle.dumps(error))
        return error
    except Exception:
        return RuntimeError(f"{type(error).__name__}: {error}")
