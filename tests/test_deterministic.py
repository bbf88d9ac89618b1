"""Deterministic mode through the Python API, at any world size: a user's own loop over
`micro_batch_slices` with `DistributedOptimizer(deterministic=True)` gives exactly the
bits one process gets alone, and the tree adds in one fixed order. Plain pytest runs this
file on a world of one; tests/test_mpi_suites.py under `mpirun -n 2` and `-n 4`."""
import numpy as np
import pytest

import numpy_dl as ndl
from numpy_dl import models, optim
from numpy_dl.distributed import DistributedOptimizer, SingleProcessCommunicator
from numpy_dl.distributed.tree import TreeSum, micro_batch_slices
from numpy_dl.loss import VAELoss
from numpy_dl.nn.utils import clip_grad_norm_

from distributed_helpers import WORLD, digest, on_every_rank

comm = WORLD
MICRO_BATCHES, GLOBAL_BATCH, STEPS = 8, 64, 12


def train(world, clip=None, micro_batches=MICRO_BATCHES):
    """A small VAE trained for STEPS global batches in deterministic mode on `world`;
    the digest of its parameters and Adam state."""
    ndl.manual_seed(0)
    model = models.VariationalAutoencoder(36, [24], 4)
    optimizer = DistributedOptimizer(optim.Adam(model.parameters(), lr=1e-2), comm=world,
                                     deterministic=True, micro_batches=micro_batches)
    criterion = VAELoss("bce")
    data = np.random.default_rng(1).random((STEPS, GLOBAL_BATCH, 36), dtype=np.float32)
    for step in range(STEPS):
        slices = micro_batch_slices(GLOBAL_BATCH, micro_batches, world)
        for number, rows in enumerate(slices, start=1):
            x = data[step][rows]
            eps = np.random.default_rng([step, rows.start]).standard_normal((len(x), 4),
                                                                             dtype=np.float32)
            optimizer.zero_grad()
            mu, logvar = model.encode(x)
            recon = model.decode(model.reparameterize(mu, logvar, eps))
            criterion(recon, x, mu, logvar).backward()
            if number == len(slices) and clip is not None:
                optimizer.synchronize()
                clip_grad_norm_(model.parameters(), clip)
            optimizer.step()
    state = optimizer.state_dict()["state"]
    return digest({**model.state_dict(),
                   **{f"{i}/{k}": np.asarray(v) for i, e in state.items() for k, v in e.items()}})


@pytest.mark.parametrize("clip", [None, 0.5])
@pytest.mark.parametrize("per_rank", ["several", "one"])
def test_any_world_size_gives_the_bits_of_one_process(clip, per_rank):
    """`one`: a micro-batch per rank, whose message goes into the tree without a copy."""
    micro_batches = MICRO_BATCHES if per_rank == "several" else comm.size
    if micro_batches & (micro_batches - 1):
        pytest.skip("micro_batches must be a power of two")
    alone = train(SingleProcessCommunicator(), clip, micro_batches)
    together = on_every_rank(comm, train(comm, clip, micro_batches))
    assert together == [alone] * comm.size


def test_each_rank_takes_a_contiguous_run_of_micro_batches():
    slices = micro_batch_slices(64, 8, comm)
    everyone = on_every_rank(comm, [(s.start, s.stop) for s in slices])
    flat = [pair for mine in everyone for pair in mine]
    assert flat == [(8 * j, 8 * j + 8) for j in range(8)]


def test_the_tree_adds_pairs_then_pairs_of_pairs():
    leaves = [np.array([value], np.float32) for value in (1e8, 1.0, -1e8, 1.0)]
    tree = TreeSum()
    for leaf in leaves:
        tree.add(leaf.copy())
    expected = (leaves[0] + leaves[1]) + (leaves[2] + leaves[3])  # 1e8 + 1 rounds to 1e8
    assert tree.total().tobytes() == expected.tobytes()
    assert expected[0] == 0.0 and ((leaves[0] + leaves[2]) + (leaves[1] + leaves[3]))[0] == 2.0


class WorldOf:
    def __init__(self, size):
        self.size, self.rank, self.step = size, 0, 0


@pytest.mark.parametrize("ranks, micro_batches, message", [
    (3, 8, "divides micro_batches=8 \\(1, 2, 4, 8\\); got 3 ranks"),
    (1, 6, "must be a power of two"),
])
def test_unsupported_sizes_are_refused_with_one_line(ranks, micro_batches, message):
    model = models.Autoencoder(4, [3], 2)
    with pytest.raises(ValueError, match=message):
        DistributedOptimizer(optim.SGD(model.parameters()), comm=WorldOf(ranks),
                             deterministic=True, micro_batches=micro_batches)
    with pytest.raises(ValueError, match="cannot be cut into 8 equal micro-batches"):
        micro_batch_slices(60, 8, WorldOf(1))
