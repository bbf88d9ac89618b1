"""TensorDataset, DataLoader and DistributedSampler."""
import numpy as np
import pytest

import numpy_dl as ndl
from numpy_dl.data import DataLoader, Dataset, DistributedSampler, TensorDataset


def _dataset(n=10):
    x = np.arange(n * 2, dtype=np.float32).reshape(n, 2)
    y = np.arange(n, dtype=np.int64)
    return TensorDataset(x, y)


def _labels(loader):
    return np.concatenate([batch[1] for batch in loader])


# ---------------------------------------------------------------------- TensorDataset
def test_tensor_dataset():
    ds = _dataset(5)
    assert len(ds) == 5
    x, y = ds[3]
    np.testing.assert_array_equal(x, [6, 7])
    assert y == 3
    xs, ys = ds[np.array([4, 0])]
    np.testing.assert_array_equal(ys, [4, 0])
    assert xs.shape == (2, 2)
    from_tensors = TensorDataset(ndl.tensor(np.zeros((3, 2))))
    assert len(from_tensors) == 3 and isinstance(from_tensors[0][0], np.ndarray)


def test_tensor_dataset_errors():
    with pytest.raises(ValueError, match=r"\[3, 4\]"):
        TensorDataset(np.zeros(3), np.zeros(4))
    with pytest.raises(ValueError):
        TensorDataset()


# ---------------------------------------------------------------------- DataLoader
@pytest.mark.parametrize("n, batch_size, drop_last, batches, last",
                         [(10, 3, False, 4, 1), (10, 3, True, 3, 3), (9, 3, False, 3, 3),
                          (9, 3, True, 3, 3), (2, 5, False, 1, 2), (2, 5, True, 0, None)])
def test_loader_length_and_batches(n, batch_size, drop_last, batches, last):
    loader = DataLoader(_dataset(n), batch_size=batch_size, drop_last=drop_last)
    assert len(loader) == batches
    out = list(loader)
    assert len(out) == batches
    if batches:
        assert len(out[-1][0]) == last
        assert all(len(b[0]) == batch_size for b in out[:-1])


def test_loader_yields_tuples_of_arrays_in_order():
    loader = DataLoader(_dataset(10), batch_size=4)
    batch = next(iter(loader))
    assert isinstance(batch, tuple) and len(batch) == 2
    x, y = batch
    assert isinstance(x, np.ndarray) and x.dtype == np.float32 and x.shape == (4, 2)
    assert y.dtype == np.int64
    np.testing.assert_array_equal(_labels(loader), np.arange(10))
    # consistent rows: x belongs to its y
    for x, y in loader:
        np.testing.assert_array_equal(x[:, 0], 2 * y)


def test_shuffle_with_seed_is_reproducible_and_changes_per_epoch():
    a = DataLoader(_dataset(20), batch_size=6, shuffle=True, seed=3)
    b = DataLoader(_dataset(20), batch_size=6, shuffle=True, seed=3)
    first_a, first_b = _labels(a), _labels(b)
    np.testing.assert_array_equal(first_a, first_b)
    assert sorted(first_a) == list(range(20))
    assert not np.array_equal(first_a, np.arange(20))
    second_a = _labels(a)
    assert not np.array_equal(first_a, second_a)
    np.testing.assert_array_equal(second_a, _labels(b))
    assert not np.array_equal(first_a, _labels(DataLoader(_dataset(20), 6, shuffle=True, seed=4)))


def test_shuffle_without_seed_follows_manual_seed():
    ndl.manual_seed(11)
    first = _labels(DataLoader(_dataset(20), batch_size=5, shuffle=True))
    ndl.manual_seed(11)
    again = _labels(DataLoader(_dataset(20), batch_size=5, shuffle=True))
    np.testing.assert_array_equal(first, again)


def test_shuffle_with_drop_last_drops_random_rows():
    loader = DataLoader(_dataset(10), batch_size=3, shuffle=True, drop_last=True, seed=0)
    labels = _labels(loader)
    assert len(labels) == 9 and len(set(labels)) == 9


def test_loader_with_sampler():
    loader = DataLoader(_dataset(10), batch_size=2, sampler=[9, 0, 3, 3, 5])
    assert len(loader) == 3
    np.testing.assert_array_equal(_labels(loader), [9, 0, 3, 3, 5])
    with pytest.raises(ValueError, match="sampler"):
        DataLoader(_dataset(10), sampler=[0], shuffle=True)
    with pytest.raises(ValueError, match="batch_size"):
        DataLoader(_dataset(10), batch_size=0)


class Squares(Dataset):
    def __len__(self):
        return 5

    def __getitem__(self, i):
        return np.array([i, i * i], dtype=np.float32), i


class Plain(Dataset):
    def __len__(self):
        return 3

    def __getitem__(self, i):
        return np.full(2, i, dtype=np.float32)


def test_loader_with_custom_datasets():
    x, y = list(DataLoader(Squares(), batch_size=2))[2]
    np.testing.assert_array_equal(x, [[4, 16]])
    np.testing.assert_array_equal(y, [4])
    batches = list(DataLoader(Plain(), batch_size=2))
    np.testing.assert_array_equal(batches[0], [[0, 0], [1, 1]])
    with pytest.raises(NotImplementedError):
        len(Dataset())


# ---------------------------------------------------------------------- DistributedSampler
def _shards(n, replicas, **options):
    return [list(DistributedSampler(list(range(n)), num_replicas=replicas, rank=r, **options))
            for r in range(replicas)]


@pytest.mark.parametrize("shuffle", [True, False])
def test_shards_are_disjoint_equal_and_cover_when_divisible(shuffle):
    shards = _shards(12, 4, shuffle=shuffle, seed=5)
    assert all(len(s) == 3 for s in shards)
    union = [i for s in shards for i in s]
    assert sorted(union) == list(range(12))


@pytest.mark.parametrize("shuffle", [True, False])
def test_padding_when_not_divisible(shuffle):
    shards = _shards(10, 4, shuffle=shuffle, seed=1)
    assert all(len(s) == 3 for s in shards)
    union = [i for s in shards for i in s]
    assert set(union) == set(range(10)) and len(union) == 12
    sampler = DistributedSampler(list(range(10)), num_replicas=4, rank=0, shuffle=shuffle, seed=1)
    order = sampler.global_order()
    np.testing.assert_array_equal(order[10:], order[:2])  # wrapped around, as PyTorch
    assert len(sampler) == 3


def test_unshuffled_shards_are_pytorchs():
    assert _shards(10, 4, shuffle=False) == [[0, 4, 8], [1, 5, 9], [2, 6, 0], [3, 7, 1]]
    assert _shards(10, 4, shuffle=False, drop_last=True) == [[0, 4], [1, 5], [2, 6], [3, 7]]


def test_drop_last_drops_the_tail():
    shards = _shards(10, 4, shuffle=True, seed=2, drop_last=True)
    assert all(len(s) == 2 for s in shards)
    union = [i for s in shards for i in s]
    assert len(set(union)) == 8
    with pytest.raises(ValueError, match="drop_last"):
        DistributedSampler(list(range(3)), num_replicas=4, rank=0, drop_last=True)


def test_order_depends_only_on_seed_and_epoch():
    a = DistributedSampler(list(range(50)), num_replicas=2, rank=1, seed=7)
    b = DistributedSampler(list(range(50)), num_replicas=2, rank=1, seed=7)
    assert list(a) == list(b)
    assert list(a) == list(a)  # re-iterating the same epoch repeats it
    epoch0 = list(a)
    a.set_epoch(1)
    assert list(a) != epoch0
    b.set_epoch(1)
    assert list(a) == list(b)
    a.set_epoch(0)
    assert list(a) == epoch0
    c = DistributedSampler(list(range(50)), num_replicas=2, rank=1, seed=8)
    assert list(c) != epoch0
    # every epoch still partitions the data
    for epoch in range(3):
        shards = [DistributedSampler(list(range(50)), 2, r, seed=7) for r in range(2)]
        for s in shards:
            s.set_epoch(epoch)
        assert sorted(list(shards[0]) + list(shards[1])) == list(range(50))


def test_loader_with_distributed_sampler():
    ds = _dataset(10)
    sampler = DistributedSampler(ds, num_replicas=3, rank=2, seed=0)
    loader = DataLoader(ds, batch_size=2, sampler=sampler)
    assert len(loader) == 2
    np.testing.assert_array_equal(_labels(loader), list(sampler))
    sampler.set_epoch(4)
    np.testing.assert_array_equal(_labels(loader), list(sampler))


def test_sampler_rank_errors_and_environment(monkeypatch):
    with pytest.raises(ValueError, match=r"\[0, 2\)"):
        DistributedSampler(list(range(4)), num_replicas=2, rank=2)
    for name in ("PMI_RANK", "PMI_SIZE", "OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE",
                 "PMIX_RANK", "MV2_COMM_WORLD_RANK", "MV2_COMM_WORLD_SIZE", "PMI_FD",
                 "NUMPY_DL_NO_MPI"):
        monkeypatch.delenv(name, raising=False)
    sampler = DistributedSampler(list(range(8)))
    assert (sampler.rank, sampler.num_replicas) == (0, 1) and len(sampler) == 8
    monkeypatch.setenv("OMPI_COMM_WORLD_RANK", "2")
    monkeypatch.setenv("OMPI_COMM_WORLD_SIZE", "4")
    sampler = DistributedSampler(list(range(8)))
    assert (sampler.rank, sampler.num_replicas) == (2, 4) and len(sampler) == 2
    monkeypatch.setenv("NUMPY_DL_NO_MPI", "1")
    assert DistributedSampler(list(range(8))).num_replicas == 1
