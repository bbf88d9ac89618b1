"""Data-parallel training over MPI, and the same code in a single process.

.. code-block:: python

    from numpy_dl import distributed, optim
    from numpy_dl.distributed import checkpoint

    comm = distributed.init()                         # MPI under mpirun, else one process
    distributed.broadcast_parameters(model, comm)     # rank 0's weights and buffers
    optimizer = distributed.DistributedOptimizer(optim.Adam(model.parameters()), comm=comm)
    distributed.broadcast_optimizer_state(optimizer, comm)
    for step, (x,) in enumerate(loader):              # loader over a DistributedSampler
        optimizer.zero_grad(); loss = criterion(model(x), x); loss.backward()
        optimizer.step()                              # averages gradients, then Adam
        logged = distributed.mean_over_ranks({"loss": (loss.item(), len(x))}, comm)
        if step % 500 == 0:
            distributed.check_replicas(model, comm)   # raises if the ranks drifted apart
    checkpoint.save(run_dir, model, optimizer, epoch=e, step=step, comm=comm)

`DistributedOptimizer(..., deterministic=True, micro_batches=K)` with
`micro_batch_slices` gives the same bits at every rank count dividing K (see tree.py).
For code ported from Horovod: `op=distributed.Sum` or `distributed.Adasum`,
`optimizer.skip_synchronize()`, `optimizer.join()` for ranks with fewer batches than
others (see optimizer.py), and `distributed.allgather_object(obj)`.

Under MPI, `init()` also installs the abort-on-exception hook (`install_failure_handlers`)
and starts the stall watchdog (NUMPY_DL_STALL_TIMEOUT seconds, default 300, 0 = off).
Every function taking `comm=None` uses `init()`'s communicator. Functions documented as
collective must be called by every rank, in the same order.
"""
from . import checkpoint
from .broadcast import broadcast_optimizer_state, broadcast_parameters, broadcast_tree, on_root
from .communicator import (Communicator, MPIJobError, SingleProcessCommunicator,
                           allgather_object, init, raise_together)
from .failure import install_failure_handlers
from .metrics import mean_over_ranks
from .optimizer import Adasum, Average, DistributedOptimizer, Sum
from .replica import ReplicaMismatchError, check_replicas
from .tree import micro_batch_slices

__all__ = ["init", "MPIJobError", "Communicator", "SingleProcessCommunicator", "DistributedOptimizer",
           "Average", "Sum", "Adasum", "broadcast_parameters", "broadcast_optimizer_state",
           "broadcast_tree", "on_root", "allgather_object", "raise_together", "mean_over_ranks",
           "check_replicas", "ReplicaMismatchError", "install_failure_handlers", "checkpoint",
           "micro_batch_slices"]
