"""The small data-parallel training loop the subprocess tests run under mpirun."""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from distributed_helpers import global_batch, local_part, mse, small_model  # noqa: E402
from numpy_dl import distributed, optim  # noqa: E402

GLOBAL_BATCH = 8


def start(comm, seed=0):
    """A model and a DistributedOptimizer, equal on every rank."""
    model = small_model(seed=seed + comm.rank)
    optimizer = distributed.DistributedOptimizer(optim.Adam(model.parameters(), lr=1e-2),
                                                 comm=comm)
    distributed.broadcast_parameters(model, comm)
    return model, optimizer


def train_step(model, optimizer, comm, step):
    """One update on this rank's share of global batch `step` (the same global batches at
    any world size that divides GLOBAL_BATCH)."""
    x, y = global_batch(step, GLOBAL_BATCH)
    optimizer.zero_grad()
    mse(model, local_part(x, comm), local_part(y, comm)).backward()
    optimizer.step()
