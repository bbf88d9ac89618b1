"""Adasum (Maleki et al., 2021; Horovod's `op=hvd.Adasum`): combine gradients so that
what they agree on is averaged and what is new in each is added.

For two gradients a and b of one parameter tensor,

    adasum(a, b) = (1 - a.b / (2 |a|^2)) a + (1 - a.b / (2 |b|^2)) b

which is a + b when they are orthogonal and a when they are equal; a zero gradient
leaves the other unchanged (nothing is divided by its zero norm: its term is zero
anyway, and the other's coefficient is 1 because a.b = 0). The ranks are combined in one
fixed binary tree by recursive doubling, as `tree.sum_in_tree_order` sums: rank r
combines its vector with rank r XOR 1's, then the result with rank r XOR 2's, and so on,
so a world of 2^m ranks ends with adasum(adasum(g0, g1), adasum(g2, g3)) ... on every
rank.

Both ranks of a pair must end with the same bits, or the replicas drift apart: each
puts the lower rank's vector first and computes the same float64 expressions from the
same two vectors, and the per-parameter dot products and norms are sums over the same
slices in the same order (np.add.reduceat over the flat buffer, in float64).
"""
import numpy as np


def adasum_pair(low, high, starts):
    """adasum(low, high) of each parameter, rounded to their dtype. `low` and `high` are
    flat gradient vectors of the same layout; `starts` holds where each parameter of
    nonzero size begins (in increasing order; the last one runs to the end)."""
    low64, high64 = low.astype(np.float64), high.astype(np.float64)
    dot = np.add.reduceat(low64 * high64, starts)
    coefficients = []
    for vector in (low64, high64):
        norm = np.add.reduceat(vector * vector, starts)
        ratio = np.divide(dot, 2 * norm, out=np.zeros_like(dot), where=norm > 0)
        coefficients.append(np.repeat(1 - ratio, np.diff(starts, append=low.size)))
    return (coefficients[0] * low64 + coefficients[1] * high64).astype(low.dtype)


def adasum_in_tree_order(message, slices, comm):
    """Collective: every rank's `message` combined in place over the ranks, pair by pair up
    the tree. `message` is a flat group's: the gradients of the parameters at `slices`
    (combined by Adasum, parameter by parameter), then counters (flags, passes: summed).
    `comm.size` must be a power of two."""
    end = slices[-1].stop
    starts = np.array([where.start for where in slices if where.stop > where.start], dtype=int)
    partner = np.empty_like(message)
    distance = 1
    while distance < comm.size:
        comm.exchange_(message, partner, comm.rank ^ distance)
        low, high = (message, partner) if comm.rank & distance == 0 else (partner, message)
        message[:end] = adasum_pair(low[:end], high[:end], starts)
        message[end:] += partner[end:]
        distance *= 2
    return message
