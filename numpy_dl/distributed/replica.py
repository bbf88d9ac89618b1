"""Replica check: are the parameters still bitwise identical on every rank?

Data-parallel training is only correct while every rank holds the same parameters; a bug
(a rank skipping an update, a non-deterministic op, a hand-edited weight) makes them drift
apart silently. Each rank hashes every parameter (crc32, about as fast as reading the
memory); one Allreduce of [hash, -hash] with MIN yields the smallest and largest hash of
each parameter across ranks, and they differ exactly where the ranks disagree. Cheap
enough to run every few hundred steps from the training loop:

    if step % check_every == 0:
        check_replicas(model, comm)
"""
import zlib

import numpy as np

from .communicator import resolve


class ReplicaMismatchError(RuntimeError):
    """The ranks' parameters have drifted apart; raised on every rank at once."""


def check_replicas(model, comm=None):
    """Raise ReplicaMismatchError on every rank, naming the first differing parameter and
    which ranks hold which value, when the ranks' parameters are not identical. Collective."""
    comm = resolve(comm)
    named = list(model.named_parameters())
    hashes = np.array([zlib.crc32(np.asarray(param.data, order="C")) for _, param in named],
                      dtype=np.int64)
    extremes = comm.allreduce_(np.concatenate([hashes, -hashes]), op="min")
    differ = np.flatnonzero(extremes[:len(named)] != -extremes[len(named):])
    if differ.size == 0:
        return
    first = int(differ[0])
    holders = comm.gather_object(int(hashes[first]))
    holders = comm.bcast_object(holders)
    groups = {}
    for rank, value in enumerate(holders):
        groups.setdefault(value, []).append(rank)
    raise ReplicaMismatchError(
        f"parameters differ between ranks at step {comm.step}: first differing parameter "
        f"{named[first][0]!r} ({differ.size} of {len(named)} differ); ranks holding the same "
        f"value: {sorted(groups.values())}")
