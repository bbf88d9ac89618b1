"""Sums that come out bitwise the same at every rank count: one fixed binary tree.

A data-parallel run normally sums each rank's gradient with MPI's Allreduce, which adds
in an order of its own; and each rank's gradient is itself a sum over however many
samples it holds. Float addition is not associative, so `-n 1`, `-n 2` and `-n 8` end a
step a few ulps apart, and training carries the difference on until the runs visibly
part. Deterministic mode removes both sources:

- The global batch is cut into K micro-batches of a fixed size (K a power of two), and
  each is a forward and backward pass of its own, with the same shapes at any rank
  count. Rank r of R takes the contiguous run of micro-batches r*K/R ... (r+1)*K/R - 1
  (`micro_batch_slices`).
- The K micro-gradients are added in one binary tree: leaves 0+1, 2+3, ..., then pairs
  of those, and so on. A rank adds its own run of leaves as they come (`TreeSum`, a
  binary counter); its run is an aligned subtree, so the ranks' sums are the nodes one
  level up, and recursive doubling (`sum_in_tree_order`: rank r adds the sum of rank
  r XOR 1, then of r XOR 2, ...) adds exactly the pairs the tree adds. The two operands of
  each addition may come in either order: IEEE addition is commutative, so both ranks of
  a pair get the same bits.

So every rank count from 1 to K computes the same additions in the same order.
"""
import numpy as np


def check_micro_batches(micro_batches, ranks):
    """ValueError unless `micro_batches` is a power of two that `ranks` divides."""
    k = micro_batches
    if isinstance(k, bool) or not isinstance(k, int) or k < 1 or k & (k - 1):
        raise ValueError(f"micro_batches must be a power of two (1, 2, 4, 8, ...), got {k!r}")
    if k % ranks:
        divisors = [d for d in range(1, k + 1) if k % d == 0]
        raise ValueError(f"deterministic mode runs on a number of ranks that divides "
                         f"micro_batches={k} ({', '.join(map(str, divisors))}); got {ranks} "
                         f"ranks")


def micro_batch_slices(batch_size, micro_batches, comm):
    """This rank's micro-batches as slices of a global batch of `batch_size` samples."""
    check_micro_batches(micro_batches, comm.size)
    if batch_size % micro_batches:
        raise ValueError(f"a global batch of {batch_size} cannot be cut into {micro_batches} "
                         f"equal micro-batches; use a multiple of {micro_batches}")
    size, per_rank = batch_size // micro_batches, micro_batches // comm.size
    first = comm.rank * per_rank
    return [slice(j * size, (j + 1) * size) for j in range(first, first + per_rank)]


class TreeSum:
    """Adds arrays that arrive in leaf order in the fixed binary tree: each new leaf is
    added to the subtree of equal size before it, as far up as it goes. After a power of
    two of leaves one subtree is left: their sum. Takes ownership of the leaves."""

    def __init__(self):
        self._subtrees = []  # (leaf count, sum), sizes strictly decreasing

    def add(self, leaf):
        count, node = 1, leaf
        while self._subtrees and self._subtrees[-1][0] == count:
            _, left = self._subtrees.pop()
            left += node
            count, node = 2 * count, left
        self._subtrees.append((count, node))

    def total(self):
        """The sum of every leaf so far (a power of two of them), and a fresh start."""
        if len(self._subtrees) != 1:
            raise RuntimeError(f"TreeSum: {sum(c for c, _ in self._subtrees)} leaves are not "
                               f"a whole tree; add a power of two of them")
        (_, node), self._subtrees = self._subtrees[0], []
        return node


def sum_in_tree_order(array, comm):
    """Collective: every rank's `array` (its subtree's sum) summed in place over the ranks,
    pair by pair up the tree (recursive doubling); `comm.size` must be a power of two."""
    partner_sum = np.empty_like(array)
    distance = 1
    while distance < comm.size:
        comm.exchange_(array, partner_sum, comm.rank ^ distance)
        array += partner_sum
        distance *= 2
    return array
