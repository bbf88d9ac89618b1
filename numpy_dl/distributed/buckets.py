"""Overlap: all-reduce a param group's gradients in buckets while backward still runs.

On a cluster network the all-reduce of a whole model takes as long as a step or longer.
Backward produces the gradients from the last layer to the first, so, as Horovod and
PyTorch DDP do, the flat gradient buffer is cut into buckets of about `bucket_bytes`, in
reverse parameter order, and each bucket's non-blocking all-reduce starts as soon as
backward has written all of its gradients (a post-accumulate-grad hook on each
parameter says when). The buckets start in the same fixed order on every rank (a bucket
that is ready early waits for the ones before it), as MPI requires of collectives; the
one-slot-per-parameter flags and the pass count (the message's tail, see
numpy_dl.optim.flat) follow in one small all-reduce at the end, when every rank knows
which parameters it has gradients for.

When a bucket starts depends on this rank's graph: a parameter without a gradient here
holds its bucket back until `finish()`. So the buckets travel on a communicator of their
own (`comm.duplicate()`): their order among themselves is fixed, and how they interleave
with the user's collectives, or another optimizer's buckets, cannot mismatch them.

MPI moves a message only while the process is inside an MPI call (no progress thread by
default), so every hook also tests the buckets in flight: between layers, MPI gets a
moment to send the next piece.

Each bucket is all-reduced in place in the flat buffer (zero-copy); with fp16
compression, in its slice of a float16 copy, already divided (see optimizer.py).
`finish()` starts whatever backward did not (parameters without a gradient on this rank,
a rank that has joined), waits for everything and copies float16 results back.
"""
import weakref

import numpy as np

from .float16 import round_to_float16

DEFAULT_BUCKET_MB = 0.5  # the best of 0.25-2 at 1 Gbit/s (benchmarks/cluster_network.py)


class Bucket:
    """Parameters first..stop-1 of a FlatGroup: a contiguous slice of its gradients."""

    def __init__(self, flat, first, stop):
        self.flat, self.first, self.stop = flat, first, stop
        self.where = slice(flat.slices[first].start, flat.slices[stop - 1].stop)
        self.ready = 0          # its parameters whose gradient backward has finished

    def is_ready(self):
        params = self.flat.params[self.first:self.stop]
        return self.ready >= sum(param.requires_grad for param in params)


class BucketedReduction:
    """The buckets of an optimizer's FlatGroups and their collectives in flight. Every
    rank starts them in one fixed order: group by group, each group's from its last
    parameter back."""

    def __init__(self, flat_groups, comm, bucket_bytes, scale=None):
        self.comm = comm.duplicate()  # collective
        self.scale = scale      # fp16 compression: the factor before rounding, else None
        self.armed = False      # the next backward is the last of a cycle: start buckets
        self.buckets = [bucket for flat in flat_groups for bucket in _cut(flat, bucket_bytes)]
        self.staging = {}       # fp16 compression: FlatGroup -> its float16 message
        if scale is not None:
            self.staging = {flat: np.empty(flat.message.size, np.float16) for flat in flat_groups}
        self.started = []       # (bucket, request), in start order
        this = weakref.ref(self)  # the hooks must not keep a dropped optimizer alive
        for flat in flat_groups:  # the newest wrapper of an optimizer reduces its groups
            flat.bucketed_by = this
        self._handles = []
        for bucket in self.buckets:
            for i in range(bucket.first, bucket.stop):
                hook = lambda _, bucket=bucket, i=i: _call(this, "_gradient_ready", bucket, i)
                self._handles.append(bucket.flat.params[i].register_post_accumulate_grad_hook(hook))
        weakref.finalize(self, _remove_all, self._handles)

    @property
    def in_flight(self):
        """Whether some bucket has started and finish() has not collected it."""
        return bool(self.started)

    def _gradient_ready(self, bucket, index):
        """Hook: parameter `index` of `bucket` has its whole gradient of this backward."""
        flat = bucket.flat
        if (not self.armed or flat.params[index].grad_slot is not flat.grad_views[index]
                or flat.bucketed_by() is not self):
            return  # not the cycle's last pass, or another optimizer has the parameter now
        if any(bucket is started for started, _ in self.started):
            raise RuntimeError("backward() wrote a gradient that is already being all-reduced "
                               "(overlap): after the last backward pass of a cycle call step() "
                               "or synchronize() before the next backward(), or turn overlap off")
        bucket.ready += 1
        while len(self.started) < len(self.buckets) and self.buckets[len(self.started)].is_ready():
            self._start(self.buckets[len(self.started)])
        for _, request in self.started:
            request.test()  # lets MPI move the messages in flight

    def _start(self, bucket):
        """Start `bucket`'s all-reduce: every gradient of its parameters in the buffer,
        zeros where a parameter has none on this rank, which its flag will say."""
        flat = bucket.flat
        present = flat.gather_grads(bucket.first, bucket.stop)
        flat.flags[bucket.first:bucket.stop] = present
        for i in np.flatnonzero(~present) + bucket.first:
            flat.grad[flat.slices[i]] = 0
        message = flat.grad[bucket.where]
        if self.scale is not None:
            message = self.staging[flat][bucket.where]
            round_to_float16(flat.grad[bucket.where], self.scale, out=message)
        self.started.append((bucket, self.comm.iallreduce_(message)))

    def finish(self, passes):
        """Start the buckets backward did not, then each group's flags and pass count (in
        one small all-reduce per group); wait for every bucket. Each group's message then
        holds the sums over the ranks."""
        for bucket in self.buckets[len(self.started):]:
            self._start(bucket)
        for flat in dict.fromkeys(bucket.flat for bucket in self.buckets):
            flat.passes[0] = passes
            self.comm.allreduce_(flat.message[flat.grad.size:])
        for bucket, request in self.started:
            request.wait()
            if self.scale is not None:
                np.copyto(bucket.flat.grad[bucket.where], self.staging[bucket.flat][bucket.where])
        self.reset()

    def reset(self):
        """Forget the gradients counted so far (a new backward pass will count again)."""
        for bucket in self.buckets:
            bucket.ready = 0
        self.started = []


def _cut(flat, bucket_bytes):
    """Buckets of about `bucket_bytes` each, from the group's last parameter back to its
    first: the order in which backward finishes them."""
    buckets, stop, size = [], len(flat.params), 0
    for i in reversed(range(len(flat.params))):
        size += flat.grad_views[i].nbytes
        if size >= bucket_bytes or i == 0:
            buckets.append(Bucket(flat, i, stop))
            stop, size = i, 0
    return buckets


def _call(ref, method, *args):
    target = ref()
    if target is not None:
        getattr(target, method)(*args)


def _remove_all(handles):
    for handle in handles:
        handle.remove()
