"""join() for uneven inputs, at any world size: each rank has its own number of batches
and joins when it runs out, and the updates are what one process computes from the
batches of the ranks that still had some. Plain pytest runs this file on a world of one;
tests/test_mpi_suites.py under `mpirun -n 2`, `-n 3` and `-n 4`."""
import numpy as np
import pytest

from numpy_dl import distributed, optim
from numpy_dl.distributed import DistributedOptimizer, SingleProcessCommunicator
from numpy_dl.nn.utils import clip_grad_norm_

from distributed_helpers import (PROBE_SHAPES, WORLD, Probe, backward_known, combined_reference,
                                 digest, global_batch, known_gradient, mse,
                                 needs_power_of_two_world, on_every_rank, small_model)

comm = WORLD
LOCAL_BATCH, CLIP = 4, 0.05

SHARDS = {  # backward passes of each rank before it joins
    "rank+1": lambda rank: rank + 1,
    "rank 0 none": lambda rank: 2 * rank,
    "3 each": lambda rank: 3,  # with 2 passes per update, every rank joins mid-cycle
}


def planned_updates(batches, passes):
    """The passes of each rank that make each update when rank r makes batches[r] passes
    and then joins: update u takes passes u*passes ... (u+1)*passes - 1 of every rank
    that made them, the last of a rank's cycles maybe short."""
    count = max(-(-n // passes) for n in batches)
    return [[range(u * passes, min((u + 1) * passes, n)) for n in batches] for u in range(count)]


def last_to_join(batches, passes):
    """The rank with the most updates before it joined (the highest of them on a tie)."""
    return max(range(len(batches)), key=lambda rank: (batches[rank] // passes, rank))


@pytest.mark.parametrize("shards", SHARDS)
@pytest.mark.parametrize("passes", [1, 2])
@pytest.mark.parametrize("op, compression, overlap", [
    (distributed.Average, None, False), (distributed.Average, "fp16", False),
    (distributed.Sum, None, False), (distributed.Average, None, True),
    (distributed.Sum, "fp16", True),
    pytest.param(distributed.Adasum, None, False, marks=needs_power_of_two_world)])
def test_joined_ranks_leave_the_updates_to_the_ranks_with_data(op, compression, overlap, passes,
                                                               shards):
    batches = [SHARDS[shards](rank) for rank in range(comm.size)]
    model = Probe()
    optimizer = DistributedOptimizer(optim.SGD(model.parameters(), lr=1.0), comm=comm, op=op,
                                     backward_passes_per_step=passes, compression=compression,
                                     overlap=overlap, bucket_mb=1e-6)
    start = comm.step
    for number in range(batches[comm.rank]):
        optimizer.zero_grad()
        backward_known(model, known_gradient(comm.rank, number))
        optimizer.step()
    last = optimizer.join()
    distributed.check_replicas(model, comm)
    values = {name: getattr(model, name).data.copy() for name in PROBE_SHAPES}
    everyone = on_every_rank(comm, (last, comm.step - start, digest(values)))
    plan = planned_updates(batches, passes)
    expected = {name: np.zeros(shape) for name, shape in PROBE_SHAPES.items()}
    for update in plan:  # SGD with lr=1 from zeros: minus the sum of the updates
        gradients = [[known_gradient(rank, number) for number in numbers]
                     for rank, numbers in enumerate(update)]
        for name, value in combined_reference(op, gradients, passes).items():
            expected[name] -= value
    tolerance = dict(rtol=1e-2, atol=5e-3) if compression else dict(rtol=1e-5, atol=1e-6)
    assert everyone == [(last_to_join(batches, passes), len(plan), everyone[0][2])] * comm.size
    for name in PROBE_SHAPES:
        np.testing.assert_allclose(values[name], expected[name], err_msg=name, **tolerance)


def rank_batch(epoch, rank, number):
    """Batch `number` of rank `rank` in epoch `epoch` (every rank can make every rank's)."""
    return global_batch(10_000 * epoch + 100 * rank + number, LOCAL_BATCH)


def test_uneven_epochs_train_like_one_process_on_the_batches_that_exist():
    """Two epochs of a model, a different rank with the most batches in each, the averaged
    gradients clipped between synchronize() and step() as ported Horovod code does. The
    joined ranks clip nothing, so the replicas are identical only because join() hands
    every rank the last rank's parameters and Adam state."""
    ranks = range(comm.size)
    epochs = [[rank + 1 for rank in ranks], [comm.size - rank for rank in ranks]]  # batches
    model = small_model(seed=comm.rank)
    optimizer = DistributedOptimizer(optim.Adam(model.parameters(), lr=1e-2), comm=comm)
    distributed.broadcast_parameters(model, comm)
    lasts = []
    for epoch, batches in enumerate(epochs):
        for number in range(batches[comm.rank]):
            optimizer.zero_grad()
            mse(model, *rank_batch(epoch, comm.rank, number)).backward()
            optimizer.synchronize()
            clip_grad_norm_(model.parameters(), CLIP)
            with optimizer.skip_synchronize():
                optimizer.step()
        lasts.append(optimizer.join())
    distributed.check_replicas(model, comm)
    state = {f"{index}/{key}": np.asarray(value) for index, entry
             in optimizer.state_dict()["state"].items() for key, value in entry.items()}
    everyone = on_every_rank(comm, (lasts, digest(model.state_dict()), digest(state)))

    reference = small_model(seed=0)
    adam = optim.Adam(reference.parameters(), lr=1e-2)
    for epoch, batches in enumerate(epochs):
        for update in range(max(batches)):  # the mean loss over the ranks that have a batch
            parts = [rank_batch(epoch, rank, update)
                     for rank, count in enumerate(batches) if count > update]
            adam.zero_grad()
            mse(reference, *map(np.concatenate, zip(*parts))).backward()
            clip_grad_norm_(reference.parameters(), CLIP)
            adam.step()
    assert everyone == [([comm.size - 1, 0], *everyone[0][1:])] * comm.size
    for (key, value), expected in zip(model.state_dict().items(), reference.state_dict().values()):
        np.testing.assert_allclose(value, expected, rtol=1e-4, atol=2e-5, err_msg=key)


def test_join_refuses_what_it_cannot_do():
    alone = SingleProcessCommunicator()
    deterministic = DistributedOptimizer(optim.SGD(small_model(seed=0).parameters()), comm=alone,
                                         deterministic=True, micro_batches=1)
    with pytest.raises(RuntimeError, match="not available in deterministic mode"):
        deterministic.join()
    model = small_model(seed=0)
    optimizer = DistributedOptimizer(optim.SGD(model.parameters()), comm=alone)
    mse(model, *rank_batch(0, 0, 0)).backward()
    optimizer.synchronize()
    with pytest.raises(RuntimeError, match=r"call step\(\) first"):
        optimizer.join()
