"""DistributedOptimizer: combine the gradients of all ranks, then take the wrapped step.

Every numpy_dl optimizer keeps a param group's gradients in one contiguous buffer
followed by one flag slot per parameter and one pass-count slot
(`optimizer.flat_groups[i].message`), so combining a whole model is one in-place
Allreduce per group: no packing copies and no per-parameter messages. The flags (1 where
this rank has a gradient) travel in the same message, so the ranks agree on which
parameters have a gradient: a parameter without one on some rank counts as zeros there,
and every parameter that has one on any rank gets the result on every rank. Every rank
therefore always makes the same collectives, whatever the data did to its graph.

The result replaces the gradients in place, so the gradients anyone sees after step()
or synchronize() are the averages (or sums, or Adasum's), as in Horovod:

.. code-block:: python

    opt = DistributedOptimizer(Adam(model.parameters()), comm=comm,
                               backward_passes_per_step=1, compression=None,
                               op=distributed.Average, overlap=None, bucket_mb=0.5)
    opt.zero_grad(); loss.backward(); opt.step()

How the gradients combine, `op=` (Horovod's names, `distributed.Average` by default):

- `Average`: the mean over every backward pass of every rank. The sum is divided right
  after the all-reduce by the number of passes it holds, which the last slot of the
  message counts in the same all-reduce (ranks x backward_passes_per_step, fewer only
  when some rank has joined, see join() below).
- `Sum`: the sum over the ranks of each rank's gradient (the mean of its
  backward_passes_per_step passes): on N ranks, N times their Average.
- `Adasum`: Horovod's adaptive summation of each rank's gradient (taken as for Sum),
  parameter by parameter: orthogonal gradients add up, equal ones are averaged, so the
  learning rate of one rank usually serves any number of them (see adasum.py). The
  ranks are paired up a fixed binary tree by point-to-point exchanges of whole
  messages, log2(ranks) of them instead of one Allreduce, so the number of ranks must be
  a power of two; every rank ends with the same bits.

Gradient accumulation, `backward_passes_per_step=k`: keep the usual loop of zero_grad(),
backward(), step() per local batch. step() counts its calls; the first k-1 of every k do
nothing, and the k-th combines the accumulated gradients and updates. zero_grad() clears
only at the start of a cycle (right after an update), so the k backward passes add up in
`.grad` (call the wrapper's zero_grad, not the model's). With Average, the update uses
the mean of the k accumulated gradients over all ranks, so with a loss that is a mean
over the batch, k passes of local batch B on N ranks take exactly the step of one batch
of k*N*B (unlike Horovod's default, which sums over the k passes).

Compression, `compression="fp16"`: the message is the gradient, already divided by what
`op` divides by (the number of passes over all ranks for Average, so that the sum stays
as large as the largest gradient; backward_passes_per_step for Sum, whose sum over the
ranks may overflow float16 where the average would not), rounded to float16. It halves
the bytes on the wire and costs one conversion each way; gradients below float16's range
become 0. It pays only on slow networks: within a node, NumPy's float16 conversions and
MPI's float16 sum cost more than the bytes they save (benchmarks/allreduce.py). Not with
Adasum, whose coefficients come from dot products of the gradients themselves. The pass
count travels in the message's dtype, which must count ranks x backward_passes_per_step
exactly: up to 2048 in float16.

Overlap, `overlap=True` (see buckets.py): the gradient buffer is all-reduced in buckets of
about `bucket_mb` MiB, each started, without blocking, as soon as backward has written
its gradients (from the last layer back), so that on a network the all-reduce travels
while backward still computes; step() (or synchronize()) waits for them. The buckets
start in one fixed order on every rank, on a communicator of their own (made by the
constructor, which is then collective), so they never mix with the user's collectives or
another optimizer's; the results are the sums of the fused all-reduce. `overlap=None`, the
default, turns it on when the ranks span more than one node; within a node the one fused
all-reduce is as fast. Not with Adasum or deterministic mode, which combine whole
messages. While buckets are in flight their gradients are being summed in place: read
or clip `.grad` after synchronize() (Horovod's pattern), and do not call backward()
again before step() (it raises RuntimeError when it would write into a bucket in flight).
A zero_grad() at the start of a cycle completes the all-reduces of a backward that was not
followed by step() (a GAN's generator pass through the discriminator) and drops them, on
every rank alike.

Deterministic mode, `deterministic=True, micro_batches=K` (see tree.py): the same bits at
every rank count that divides K. Each step() call takes the gradient of one micro-batch
(the rank's next one of `distributed.micro_batch_slices(global_batch, K, comm)`, its loss
a mean over the micro-batch); the K/size-th call sums the K micro-gradients of all ranks
in one fixed binary tree, divides by K (a power of two: exact) and updates. It averages
(op=Average only) and has no join(): every global batch is split over all ranks:

.. code-block:: python

    opt = DistributedOptimizer(Adam(model.parameters()), comm=comm, deterministic=True,
                               micro_batches=8)
    for rows in distributed.micro_batch_slices(len(x_global), 8, comm):
        opt.zero_grad(); criterion(model(x_global[rows]), x_global[rows]).backward()
        opt.step()                                # updates after this rank's last one

`synchronize()` combines early, e.g. to clip the averaged gradients, and the next step()
updates without combining again. Horovod's spelling of it runs as it is:

.. code-block:: python

    opt.synchronize(); clip_grad_norm_(model.parameters(), 1.0)
    with opt.skip_synchronize():
        opt.step()

Inside skip_synchronize(), a step() that updates without a synchronize() in its cycle
raises RuntimeError (Horovod's steps on whatever the gradients hold, and the ranks
silently drift apart).

Uneven inputs, `join()` (Horovod's `hvd.join()`, PyTorch's Join): each rank calls it
once it has run out of batches, whatever the others still have:

.. code-block:: python

    for x in my_batches:                          # not the same number on every rank
        opt.zero_grad(); criterion(model(x), x).backward(); opt.step()
    last = opt.join()                             # returns once every rank has joined

A joined rank takes part in the others' remaining updates: its message holds zero
gradients and a pass count of 0 (first, the passes of a cycle it had begun, if any),
and it applies each update as they do. So Average is the mean over the passes the ranks
with data made; Sum and Adasum combine those ranks' gradients (a zero gradient changes
neither), a begun cycle's sum divided by backward_passes_per_step as a whole one's. When
every rank has joined, join() returns the rank that joined last (the
highest one of those that joined before the same update) and copies its parameters and
optimizer state to every rank: the joined ranks did not do what the active ones did
between synchronize() and step() (clipping) or to the hyper-parameters (a per-step lr
schedule), and the replicas must be identical again. A learning-rate scheduler's own
state is not the optimizer's and is not copied: after join(), step it (or rebuild it)
the same way on every rank, as with Horovod. Until every rank has joined, the
active ranks must make no collective other than step() and synchronize() (no
mean_over_ranks, no check_replicas): the joined ranks wait in an update's all-reduce.

Everything else (param_groups, state_dict, load_state_dict, defaults, ...) is the wrapped
optimizer's. Each update also advances `comm.step`, which the stall watchdog reports.
"""
from contextlib import contextmanager

import numpy as np

from .adasum import adasum_in_tree_order
from .broadcast import broadcast_optimizer_state
from .buckets import DEFAULT_BUCKET_MB, BucketedReduction
from .communicator import resolve
from .float16 import round_to_float16
from .tree import TreeSum, check_micro_batches, sum_in_tree_order

COMPRESSIONS = (None, "none", "fp16")
Average, Sum, Adasum = "average", "sum", "adasum"
OPS = (Average, Sum, Adasum)


class DistributedOptimizer:
    """Wraps an optimizer so that `step()` first combines the gradients over the ranks
    (their mean by default), then takes the wrapped optimizer's step, as Horovod's
    `hvd.DistributedOptimizer`. The docstring of numpy_dl.distributed.optimizer explains
    each option."""

    def __init__(self, optimizer, comm=None, backward_passes_per_step=1, compression=None,
                 deterministic=False, micro_batches=8, op=Average, overlap=None,
                 bucket_mb=DEFAULT_BUCKET_MB):
        if isinstance(optimizer, DistributedOptimizer):
            raise TypeError("DistributedOptimizer: this optimizer is already distributed")
        if not hasattr(optimizer, "flat_groups"):
            raise TypeError(f"DistributedOptimizer wraps a numpy_dl optimizer (SGD, Adam, ...), "
                            f"got {type(optimizer).__name__}")
        passes = backward_passes_per_step
        if isinstance(passes, bool) or not isinstance(passes, int) or passes < 1:
            raise ValueError(f"DistributedOptimizer: backward_passes_per_step must be an "
                             f"integer >= 1, got {passes!r}")
        if compression not in COMPRESSIONS:
            raise ValueError(f"DistributedOptimizer: compression must be one of {COMPRESSIONS}, "
                             f"got {compression!r}")
        if op not in OPS:
            raise ValueError(f"DistributedOptimizer: op must be distributed.Average, Sum or "
                             f"Adasum (the strings {OPS}), got {op!r}")
        self.optimizer = optimizer
        self.comm = resolve(comm)
        self.backward_passes_per_step = passes
        self.compression = None if compression == "none" else compression
        self.op = op
        self.deterministic = bool(deterministic)
        self.micro_batches = micro_batches if deterministic else None
        if op == Adasum:
            if self.compression is not None:
                raise ValueError("DistributedOptimizer: op=Adasum takes no compression: its "
                                 "coefficients come from dot products of the gradients, which "
                                 "rounding to float16 would skew")
            if self.comm.size & (self.comm.size - 1):
                raise ValueError(f"DistributedOptimizer: op=Adasum pairs the ranks up a binary "
                                 f"tree and needs a power-of-two number of ranks (1, 2, 4, 8, "
                                 f"...); got {self.comm.size}")
        if self.deterministic:
            if passes != 1 or self.compression is not None:
                raise ValueError("DistributedOptimizer: deterministic mode takes neither "
                                 "backward_passes_per_step nor compression: its micro_batches "
                                 "set the passes, and rounding to float16 would change the bits")
            if op != Average:
                raise ValueError("DistributedOptimizer: deterministic mode averages (op="
                                 "Average only): its fixed tree sums the micro-batches' "
                                 "gradients and divides by their number")
            check_micro_batches(micro_batches, self.comm.size)
            self.backward_passes_per_step = micro_batches // self.comm.size
            self._trees = [TreeSum() for _ in optimizer.flat_groups]
        self._check_pass_count()
        self._passes = 0              # step() calls since the last update
        self._synchronized = False    # synchronize() already combined this cycle
        self._skipping = False        # inside skip_synchronize()
        self._fp16_messages = {}      # param group index -> float16 buffer
        self.overlap = self._check_overlap(overlap, bucket_mb)
        self.bucket_mb = bucket_mb
        self._buckets = None          # with overlap, the BucketedReduction
        if self.overlap:
            scale = None if self.compression is None else np.float32(1.0 / self._fp16_divisor())
            self._buckets = BucketedReduction(optimizer.flat_groups, self.comm,
                                              bucket_mb * 2 ** 20, scale)
        self._arm()

    def _check_overlap(self, overlap, bucket_mb):
        """`overlap` as a bool, after checking it and `bucket_mb` go with the other options.
        None (automatic): on when the ranks span more than one node, where the network is
        slow enough for overlap to pay; off within a node, where the one fused
        all-reduce is as fast (benchmarks/scaling.py), and for deterministic mode and
        Adasum, which combine whole messages."""
        if isinstance(bucket_mb, bool) or not isinstance(bucket_mb, (int, float)) \
                or not bucket_mb > 0:
            raise ValueError(f"DistributedOptimizer: bucket_mb must be a number of MiB > 0, "
                             f"got {bucket_mb!r}")
        if overlap is None:
            return (self.comm.size > self.comm.ranks_per_node and not self.deterministic
                    and self.op != Adasum)
        if not isinstance(overlap, bool):
            raise ValueError(f"DistributedOptimizer: overlap must be True, False or None "
                             f"(automatic), got {overlap!r}")
        if overlap and (self.deterministic or self.op == Adasum):
            raise ValueError("DistributedOptimizer: overlap all-reduces buckets of gradients as "
                             "backward makes them; deterministic mode's tree and Adasum's "
                             "pairs combine whole messages, so they take overlap=False")
        return overlap

    def _arm(self):
        """With overlap, let the next backward start the buckets when it is the last pass
        of a cycle (the one whose step() updates)."""
        if self._buckets is not None:
            self._buckets.armed = (self._passes + 1 == self.backward_passes_per_step
                                   and not self._synchronized)

    def _fp16_divisor(self):
        """What fp16 compression divides the gradients by before rounding: the passes of
        all ranks for Average, this rank's for Sum."""
        passes = self.backward_passes_per_step
        return self.comm.size * passes if self.op == Average else passes

    def _check_pass_count(self):
        """ValueError unless every message's dtype counts an update's passes exactly."""
        most = self.comm.size * self.backward_passes_per_step
        for flat in self.optimizer.flat_groups:
            dtype = np.dtype(np.float16) if self.compression == "fp16" else flat.message.dtype
            exact = 2 ** (np.finfo(dtype).nmant + 1)
            if most > exact:
                raise ValueError(f"DistributedOptimizer: a {dtype} message counts up to {exact} "
                                 f"backward passes exactly, and an update here has {most} "
                                 f"({self.comm.size} ranks x {self.backward_passes_per_step}); "
                                 f"use float32 gradients, without compression")

    def __getattr__(self, name):
        optimizer = self.__dict__.get("optimizer")
        if optimizer is None:
            raise AttributeError(name)
        return getattr(optimizer, name)

    def zero_grad(self, set_to_none=True):
        """The wrapped optimizer's zero_grad, except inside a cycle of
        backward_passes_per_step passes, whose gradients must add up (deterministic mode,
        which sums the micro-batches' gradients itself, always clears)."""
        if self._buckets is not None:
            self._discard_buckets()
        if self._passes == 0 or self.deterministic:
            self.optimizer.zero_grad(set_to_none)

    def _discard_buckets(self):
        """zero_grad() with overlap: a backward since the last update may have started
        buckets (one that was not followed by step(), such as a GAN's generator pass
        through the discriminator). Every rank runs the same code, so every rank
        completes those all-reduces (DDP all-reduces every backward too), and their
        results are dropped with the gradients; inside a cycle of
        backward_passes_per_step, whose gradients must add up, that cannot be done."""
        if self._buckets.in_flight:
            if self._passes:
                raise RuntimeError("zero_grad() while the last backward's gradients are "
                                   "being all-reduced (overlap), inside a cycle of "
                                   "backward_passes_per_step: call step() or synchronize() "
                                   "after the last backward pass of a cycle")
            self._buckets.finish(self.backward_passes_per_step)
        self._buckets.reset()

    def step(self):
        """Count a backward pass; at the last of a cycle, combine the gradients over the
        ranks and update. Collective when it updates."""
        updates = self._passes + 1 >= self.backward_passes_per_step
        if updates and self._skipping and not self._synchronized:
            raise RuntimeError("step() inside skip_synchronize() would update with gradients "
                               "that synchronize() has not combined over the ranks in this "
                               "cycle (this rank's own: the ranks would drift apart); call "
                               "opt.synchronize() before it")
        self._passes += 1
        if not updates:
            if self.deterministic:
                self._fold_micro_batch()
            self._arm()
            return
        if not self._synchronized:
            self._average_gradients()
        self._update()

    def synchronize(self):
        """Combine the gradients over the ranks now; the next step() updates without
        combining again. Only valid right before the step() that updates (after the k-th
        backward pass)."""
        if self._passes + 1 < self.backward_passes_per_step:
            raise RuntimeError(f"synchronize() after backward pass {self._passes + 1} of "
                               f"{self.backward_passes_per_step}: the next step() does not "
                               f"update; call it after the last pass of the cycle")
        if not self._synchronized:
            self._average_gradients()
            self._synchronized = True
            self._arm()

    @contextmanager
    def skip_synchronize(self):
        """Horovod's `with opt.skip_synchronize(): opt.step()`, after opt.synchronize().

        step() never combines a cycle's gradients twice, inside or outside; inside, a
        step() that updates raises RuntimeError unless synchronize() combined its cycle,
        rather than step on whatever the gradients hold as Horovod's does (the ranks
        would drift apart without a word). The step()s of a cycle that do not update are
        free.
        """
        outer, self._skipping = self._skipping, True
        try:
            yield
        finally:
            self._skipping = outer

    def join(self):
        """Collective, for uneven inputs: take part in the other ranks' updates with no
        gradients until every rank has called join(); then return the rank that joined
        last, whose parameters and optimizer state every rank now holds (see the module
        docstring)."""
        if self.deterministic:
            raise RuntimeError("join() is not available in deterministic mode: every global "
                               "batch is split over all ranks, so none runs out first")
        if self._synchronized:
            raise RuntimeError("join() after synchronize(): call step() first, to take the "
                               "update that synchronize() prepared")
        joined_at = self.comm.step
        while True:
            self.zero_grad()  # keeps the passes of a cycle this rank had begun
            if not self._average_gradients(self._passes):
                break         # no rank had a pass to send: every rank has joined
            self._update()
        joined = self.comm.allgather_object(joined_at)
        last = max(range(self.comm.size), key=lambda rank: (joined[rank], rank))
        for flat in self.optimizer.flat_groups:
            self.comm.broadcast_(flat.data, root=last)
        broadcast_optimizer_state(self.optimizer, self.comm, root=last)
        return last

    def _update(self):
        """The wrapped step on the combined gradients; a new cycle begins."""
        self.optimizer.step()
        self._passes, self._synchronized = 0, False
        self.comm.step += 1
        self._arm()

    def _average_gradients(self, passes=None):
        """Combine every group's gradients over the ranks and give each parameter its
        result as `.grad`. `passes`: the backward passes this rank's gradients hold, a
        whole cycle unless join() sends fewer. Returns the passes of all ranks together
        (0: no rank sent any)."""
        if self.deterministic:
            self._fold_micro_batch()
        passes = self.backward_passes_per_step if passes is None else passes
        if self.overlap:
            self._buckets.finish(passes)
        for index, flat in enumerate(self.optimizer.flat_groups):
            if self.overlap:
                divided = 1 if self.compression is None else self._fp16_divisor()
            else:
                if not self.deterministic:  # its message is the tree's, folded already
                    self._message(flat, passes)
                divided = self._combine(index, flat)
            total = float(flat.passes[0])
            divisor = total if self.op == Average else self.backward_passes_per_step
            if total and divisor != divided:  # deterministic mode: 1/K, a power of two, exact
                flat.grad *= flat.grad.dtype.type(divided / divisor)
            for param, view, flag in zip(flat.params, flat.grad_views, flat.flags):
                param.grad = view if flag > 0 else None
        return total

    def _message(self, flat, passes):
        """Fill a group's message: every gradient (zeros where a parameter has none), the
        has-gradient flags, and the number of backward passes the gradients hold."""
        present = flat.gather()
        for where in np.flatnonzero(~present):
            flat.grad[flat.slices[where]] = 0
        flat.flags[:] = present
        flat.passes[0] = passes

    def _fold_micro_batch(self):
        """Deterministic mode: add this micro-batch's message (one pass) to the tree as its
        next leaf, and clear the gradients for the next micro-batch."""
        for flat, tree in zip(self.optimizer.flat_groups, self._trees):
            self._message(flat, 1)
            # One leaf per update needs no copy: the next backward comes after the update.
            tree.add(flat.message if self.backward_passes_per_step == 1 else flat.message.copy())
        self.optimizer.zero_grad()

    def _combine(self, index, flat):
        """Combine the group's message over the ranks in place: the gradients by `op` (in
        deterministic mode, summed in the fixed tree), flags and pass counts summed.
        Returns what the gradients are divided by already: 1, except for fp16
        compression, which divides before rounding."""
        if self.deterministic:
            total = sum_in_tree_order(self._trees[index].total(), self.comm)
            if total is not flat.message:
                flat.message[...] = total
        elif self.compression == "fp16":
            divisor = self._fp16_divisor()
            message = self._fp16_messages.get(index)
            if message is None or message.size != flat.message.size:
                message = self._fp16_messages[index] = np.empty(flat.message.size, np.float16)
            round_to_float16(flat.message, np.float32(1.0 / divisor), out=message)
            message[-1] = flat.passes[0]  # a count, not divided
            self.comm.allreduce_(message)
            np.copyto(flat.message, message)
            return divisor
        elif self.op == Adasum:
            adasum_in_tree_order(flat.message, flat.slices, self.comm)
        else:
            self.comm.allreduce_(flat.message)
        return 1

    def __repr__(self):
        mode = f", deterministic, micro_batches={self.micro_batches}" if self.deterministic else ""
        return (f"DistributedOptimizer(size={self.comm.size}, op={self.op!r}, "
                f"backward_passes_per_step={self.backward_passes_per_step}, "
                f"compression={self.compression!r}, overlap={self.overlap}{mode},\n{self.optimizer!r})")
