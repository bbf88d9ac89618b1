"""The communicator, allgather_object, metric reduction and raise_together, at any world
size."""
import math
import os
import sys

import numpy as np
import pytest

from numpy_dl import distributed, runtime
from numpy_dl.distributed import communicator

from distributed_helpers import WORLD, not_under_mpi, on_every_rank, output_of, run

comm = WORLD


def test_init_returns_one_world_matching_the_launcher():
    assert distributed.init() is comm
    assert (comm.rank, comm.size) == runtime.rank_and_size()
    assert comm.is_main == (comm.rank == 0)
    assert comm.ranks_per_node in range(1, comm.size + 1)


def test_under_mpi_open_mpi_is_asked_to_move_tcp_messages_in_a_thread():
    if comm.size == 1:
        pytest.skip("init() starts MPI only under an MPI launcher")
    assert os.environ["OMPI_MCA_btl_tcp_progress_thread"] == "1"


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
def test_iallreduce_sums_in_place_once_waited_for(dtype):
    first = np.full(1000, comm.rank + 1, dtype=dtype)
    second = np.arange(7, dtype=dtype) * (comm.rank + 1)
    requests = [comm.iallreduce_(first), comm.iallreduce_(second)]
    requests[1].test()
    for request in requests:
        request.wait()
    assert requests[0].test() and requests[1].test()
    np.testing.assert_array_equal(first, np.full(1000, comm.size * (comm.size + 1) / 2))
    np.testing.assert_array_equal(second, np.arange(7) * comm.size * (comm.size + 1) / 2)
    with pytest.raises(ValueError, match="iallreduce_ works in place"):
        comm.iallreduce_(np.zeros((4, 4), dtype=dtype)[:, 1])


def test_a_duplicate_communicators_collectives_never_match_the_originals():
    """Rank 0 starts the duplicate's all-reduce before the world's, the others after:
    each still meets its own."""
    twin = comm.duplicate()
    assert (twin.rank, twin.size) == (comm.rank, comm.size)
    mine, world = np.full(3, comm.rank + 1.0), np.full(2, 10.0 * (comm.rank + 1))
    if comm.rank == 0:
        request = twin.iallreduce_(mine)
        comm.allreduce_(world)
    else:
        comm.allreduce_(world)
        request = twin.iallreduce_(mine)
    request.wait()
    total = comm.size * (comm.size + 1) / 2
    np.testing.assert_array_equal(mine, np.full(3, total))
    np.testing.assert_array_equal(world, np.full(2, 10 * total))


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.float16, np.int64])
@pytest.mark.parametrize("op, expected", [("sum", lambda n: n * (n + 1) / 2),
                                          ("min", lambda n: 1), ("max", lambda n: n)])
def test_allreduce_in_place(dtype, op, expected):
    array = np.full((2, 3), comm.rank + 1, dtype=dtype)
    result = comm.allreduce_(array, op=op)
    assert result is array
    np.testing.assert_array_equal(array, np.full((2, 3), expected(comm.size), dtype=dtype))


def test_broadcast_in_place_from_any_root():
    root = comm.size - 1
    vector = np.full(5, comm.rank, dtype=np.float32)
    scalar = np.array(comm.rank * 10, dtype=np.int64)
    assert comm.broadcast_(vector, root=root) is vector
    comm.broadcast_(scalar, root=root)
    np.testing.assert_array_equal(vector, np.full(5, root, dtype=np.float32))
    assert scalar.shape == () and scalar == root * 10


def test_objects_travel_with_cloudpickle():
    offset = 5
    received = comm.bcast_object((lambda x: x + offset) if comm.rank == 0 else None)
    gathered = comm.gather_object({"rank": comm.rank}, root=comm.size - 1)
    comm.barrier()
    assert received(1) == 6
    if comm.rank == comm.size - 1:
        assert gathered == [{"rank": r} for r in range(comm.size)]
    else:
        assert gathered is None


def test_allgather_object_gives_every_rank_every_object():
    offset = 3 * comm.rank
    mine = {"rank": comm.rank, "add": lambda x: x + offset, "items": [0] * comm.rank}
    gathered = comm.allgather_object(mine)
    through_module = distributed.allgather_object(comm.rank * 10)  # comm=None: the world
    by_gather_and_bcast = on_every_rank(comm, comm.rank * 10)
    alone = distributed.SingleProcessCommunicator().allgather_object(mine)
    assert [each["rank"] for each in gathered] == list(range(comm.size))
    assert [each["add"](1) for each in gathered] == [1 + 3 * r for r in range(comm.size)]
    assert [len(each["items"]) for each in gathered] == list(range(comm.size))
    assert through_module == by_gather_and_bcast == [r * 10 for r in range(comm.size)]
    assert alone == [mine]


def test_bad_arguments_get_one_clear_error_on_every_rank():
    with pytest.raises(TypeError, match="NumPy array"):
        comm.allreduce_([1.0, 2.0])
    with pytest.raises(ValueError, match="C-contiguous"):
        comm.allreduce_(np.zeros((3, 4), dtype=np.float32).T)
    with pytest.raises(ValueError, match="op must be one of"):
        comm.allreduce_(np.zeros(3), op="mean")
    with pytest.raises(ValueError, match="root must be a rank"):
        comm.broadcast_(np.zeros(3), root=comm.size)
    with pytest.raises(ValueError, match="root must be a rank"):
        comm.bcast_object(1, root=-1)


def test_raise_together_raises_the_failing_ranks_error_everywhere():
    comm.barrier()
    distributed.raise_together(comm, None)
    error = ValueError("the last rank failed") if comm.rank == comm.size - 1 else None
    with pytest.raises(ValueError, match="the last rank failed"):
        distributed.raise_together(comm, error)


def test_raise_together_survives_an_unpicklable_error():
    class Unpicklable(Exception):
        def __init__(self, a, b):
            super().__init__(f"{a} and {b}")
    error = Unpicklable("one", "two") if comm.rank == comm.size - 1 else None
    with pytest.raises(Exception, match="one and two"):
        distributed.raise_together(comm, error)


def test_mean_over_ranks_weights_by_samples():
    # rank r saw r + 1 samples with mean loss r; "empty" was seen by no rank
    result = distributed.mean_over_ranks({"loss": (float(comm.rank), comm.rank + 1),
                                          "empty": (0.0, 0)}, comm)
    everyone = on_every_rank(comm, result)
    ranks = np.arange(comm.size)
    assert result["loss"] == pytest.approx((ranks * (ranks + 1)).sum() / (ranks + 1).sum())
    assert math.isnan(result["empty"])
    assert all(other["loss"] == result["loss"] for other in everyone)
    with pytest.raises(TypeError, match=r"\(mean, count\) pair"):
        distributed.mean_over_ranks({"loss": 0.5}, comm)


def test_stall_timeout_comes_from_the_environment(monkeypatch):
    monkeypatch.setenv("NUMPY_DL_STALL_TIMEOUT", "12.5")
    assert communicator.stall_timeout_from_env() == 12.5
    monkeypatch.delenv("NUMPY_DL_STALL_TIMEOUT")
    assert communicator.stall_timeout_from_env() == communicator.DEFAULT_STALL_TIMEOUT
    monkeypatch.setenv("NUMPY_DL_STALL_TIMEOUT", "soon")
    with pytest.raises(ValueError, match="NUMPY_DL_STALL_TIMEOUT"):
        communicator.stall_timeout_from_env()


@not_under_mpi
def test_single_process_never_imports_mpi4py():
    probe = ("import sys; from numpy_dl import distributed; c = distributed.init(); "
             "print(type(c).__name__, c.size, 'mpi4py' in sys.modules)")
    # NUMPY_DL_NO_MPI wins even over a launcher's variables
    result, _ = run([sys.executable, "-c", probe], timeout=60,
                    NUMPY_DL_NO_MPI=1, PMI_RANK=0, PMI_SIZE=2)
    assert result.returncode == 0, output_of(result)
    assert result.stdout.split() == ["SingleProcessCommunicator", "1", "False"]
