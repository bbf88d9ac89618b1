"""Index orders: DistributedSampler gives each rank its own shard of an epoch."""
import math

import numpy as np

from .. import runtime


class DistributedSampler:
    """Rank `rank`'s share of a dataset, as PyTorch's DistributedSampler.

    Every epoch the indices are shuffled with a generator seeded by (seed, epoch) alone, so
    all ranks agree on the order without communicating; rank r takes every num_replicas-th
    index from position r. Without drop_last the order is padded by wrapping around so every
    shard has the same length (ranks must take the same number of steps); with it the tail
    that does not divide evenly is dropped. Call `set_epoch` before each epoch.
    """

    def __init__(self, dataset, num_replicas=None, rank=None, shuffle=True, seed=0,
                 drop_last=False):
        world_rank, world_size = runtime.rank_and_size()
        self.num_replicas = world_size if num_replicas is None else int(num_replicas)
        self.rank = world_rank if rank is None else int(rank)
        if self.num_replicas < 1 or not 0 <= self.rank < self.num_replicas:
            raise ValueError(f"DistributedSampler: rank must lie in [0, {self.num_replicas}), "
                             f"got {self.rank}")
        self.dataset_size = len(dataset)
        self.shuffle, self.seed, self.drop_last = shuffle, int(seed), drop_last
        self.epoch = 0
        if drop_last:
            self.num_samples = self.dataset_size // self.num_replicas
        else:
            self.num_samples = math.ceil(self.dataset_size / self.num_replicas)
        self.total_size = self.num_samples * self.num_replicas
        if self.num_samples == 0:
            raise ValueError(f"DistributedSampler: {self.dataset_size} samples cannot give each "
                             f"of {self.num_replicas} ranks one"
                             + (" with drop_last=True" if drop_last else ""))

    def set_epoch(self, epoch):
        """Call at the start of every epoch, on every rank: the shuffle depends on the seed
        and the epoch only, so the ranks agree on it and each epoch gets a new one."""
        self.epoch = int(epoch)

    def global_order(self):
        """The epoch's order of all indices, padded or cut to num_replicas * num_samples."""
        if self.shuffle:
            order = np.random.default_rng([self.seed, self.epoch]).permutation(self.dataset_size)
        else:
            order = np.arange(self.dataset_size)
        if self.total_size > self.dataset_size:
            order = np.resize(order, self.total_size)  # wraps around
        return order[:self.total_size]

    def __iter__(self):
        return iter(self.global_order()[self.rank::self.num_replicas].tolist())

    def indices(self):
        """This rank's indices for the epoch, as an int array (what iterating yields)."""
        return self.global_order()[self.rank::self.num_replicas]

    def __len__(self):
        return self.num_samples
