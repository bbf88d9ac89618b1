"""Metrics for logging: the mean over all ranks' samples, the same number on every rank.

Each rank knows its own mean loss over its own samples; the job's loss is the mean over
all samples, i.e. the per-rank means weighted by their sample counts (ranks may hold
different counts, e.g. in a last partial batch). One small Allreduce of [sum, count]
pairs in float64 gives it for any number of metrics at once.
"""
import math

import numpy as np

from .communicator import resolve


def mean_over_ranks(metrics, comm=None):
    """`metrics` maps a name to (mean on this rank, number of samples it is over); returns
    {name: mean over every rank's samples} (nan where no rank had a sample). Collective:
    every rank passes the same names."""
    comm = resolve(comm)
    names = sorted(metrics)
    pairs = np.zeros((len(names), 2), dtype=np.float64)
    for row, name in zip(pairs, names):
        try:
            mean, count = metrics[name]
        except (TypeError, ValueError):
            raise TypeError(f"mean_over_ranks: metrics[{name!r}] must be a (mean, count) pair, "
                            f"got {metrics[name]!r}") from None
        if count < 0:
            raise ValueError(f"mean_over_ranks: metrics[{name!r}] has a negative count {count}")
        row[:] = float(mean) * count if count else 0.0, count
    comm.allreduce_(pairs)
    return {name: float(total / count) if count else math.nan
            for name, (total, count) in zip(names, pairs)}
