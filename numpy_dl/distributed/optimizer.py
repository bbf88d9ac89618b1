"""DistributedOptimizer: average the gradients over all ranks, then take the wrapped step.

Every numpy_dl optimizer keeps a param group's gradients in one contiguous buffer
followed by one flag slot per parameter (`optimizer.flat_groups[i].message`), so
averaging a whole model is one in-place Allreduce per group: no packing copies and no
per-parameter messages. The flags (1 where this rank has a gradient) travel in the same
message, so the ranks agree on which parameters have a gradient: a parameter without
one on some rank counts as zeros there, and every parameter that has one on any rank
gets the average on every rank. Every rank therefore always makes the same collectives,
whatever the data did to its graph.

The sum is divided by the number of ranks right after the all-reduce, in place, so the
gradients anyone sees after step() or synchronize() are the averages, as in Horovod.

    opt = DistributedOptimizer(Adam(model.parameters()), comm=comm,
                               backward_passes_per_step=1, compression=None)
    opt.zero_grad(); loss.backward(); opt.step()

Gradient accumulation, `backward_passes_per_step=k`: keep the usual loop of zero_grad(),
backward(), step() per local batch. step() counts its calls; the first k-1 of every k do
nothing, and the k-th averages the accumulated gradients and updates. zero_grad() clears
only at the start of a cycle (right after an update), so the k backward passes add up in
`.grad` (call the wrapper's zero_grad, not the model's). The update uses the mean of the
k accumulated gradients over all ranks, so with a loss that is a mean over the batch, k
passes of local batch B on N ranks take exactly the step of one batch of k*N*B (unlike
Horovod's default, which sums over the k passes).

Compression, `compression="fp16"`: the message is the gradient, already divided by the
number of ranks (so the sum stays as large as the largest gradient), rounded to float16.
It halves the bytes on the wire and costs one conversion each way; gradients below
float16's range become 0. It pays only on slow networks: within a node, NumPy's float16
conversions and MPI's float16 sum cost more than the bytes they save
(benchmarks/allreduce.py).

Deterministic mode, `deterministic=True, micro_batches=K` (see tree.py): the same bits at
every rank count that divides K. Each step() call takes the gradient of one micro-batch
(the rank's next one of `distributed.micro_batch_slices(global_batch, K, comm)`, its loss
a mean over the micro-batch); the K/size-th call sums the K micro-gradients of all ranks
in one fixed binary tree, divides by K (a power of two: exact) and updates:

    opt = DistributedOptimizer(Adam(model.parameters()), comm=comm, deterministic=True,
                               micro_batches=8)
    for rows in distributed.micro_batch_slices(len(x_global), 8, comm):
        opt.zero_grad(); criterion(model(x_global[rows]), x_global[rows]).backward()
        opt.step()                                # updates after this rank's last one

`synchronize()` averages early, e.g. to clip the averaged gradients:
    opt.synchronize(); clip_grad_norm_(model.parameters(), 1.0); opt.step()

Everything else (param_groups, state_dict, load_state_dict, defaults, ...) is the wrapped
optimizer's. Each update also advances `comm.step`, which the stall watchdog reports.
"""
import numpy as np

from .communicator import resolve
from .tree import TreeSum, check_micro_batches, sum_in_tree_order

COMPRESSIONS = (None, "none", "fp16")


class DistributedOptimizer:
    def __init__(self, optimizer, comm=None, backward_passes_per_step=1, compression=None,
                 deterministic=False, micro_batches=8):
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
        self.optimizer = optimizer
        self.comm = resolve(comm)
        self.backward_passes_per_step = passes
        self.compression = None if compression == "none" else compression
        self.deterministic = bool(deterministic)
        self.micro_batches = micro_batches if deterministic else None
        if self.deterministic:
            if passes != 1 or self.compression is not None:
                raise ValueError("DistributedOptimizer: deterministic mode takes neither "
                                 "backward_passes_per_step nor compression: its micro_batches "
                                 "set the passes, and rounding to float16 would change the bits")
            check_micro_batches(micro_batches, self.comm.size)
            self.backward_passes_per_step = micro_batches // self.comm.size
            self._trees = [TreeSum() for _ in optimizer.flat_groups]
        self._passes = 0              # step() calls since the last update
        self._synchronized = False    # synchronize() already averaged this cycle
        self._fp16_messages = {}      # param group index -> float16 buffer

    def __getattr__(self, name):
        optimizer = self.__dict__.get("optimizer")
        if optimizer is None:
            raise AttributeError(name)
        return getattr(optimizer, name)

    def zero_grad(self, set_to_none=True):
        if self._passes == 0 or self.deterministic:
            self.optimizer.zero_grad(set_to_none)

    def step(self):
        self._passes += 1
        if self._passes < self.backward_passes_per_step:
            if self.deterministic:
                self._fold_micro_batch()
            return
        if not self._synchronized:
            self._average_gradients()
        self.optimizer.step()
        self._passes, self._synchronized = 0, False
        self.comm.step += 1

    def synchronize(self):
        """Average the gradients now; the next step() updates without averaging again.
        Only valid right before the step() that updates (after the k-th backward pass)."""
        if self._passes + 1 < self.backward_passes_per_step:
            raise RuntimeError(f"synchronize() after backward pass {self._passes + 1} of "
                               f"{self.backward_passes_per_step}: the next step() does not "
                               f"update; call it after the last pass of the cycle")
        if not self._synchronized:
            self._average_gradients()
            self._synchronized = True

    def _average_gradients(self):
        if self.deterministic:
            self._fold_micro_batch()
        scale = 1.0 / (self.comm.size * self.backward_passes_per_step)
        for index, flat in enumerate(self.optimizer.flat_groups):
            if self.deterministic:
                total = sum_in_tree_order(self._trees[index].total(), self.comm)
                if total is not flat.message:
                    flat.message[...] = total
                flat.grad *= flat.grad.dtype.type(scale)  # 1/K, a power of two: exact
            else:
                self._message(flat)
                self._average(index, flat, scale)
            for param, view, flag in zip(flat.params, flat.grad_views, flat.flags):
                param.grad = view if flag > 0 else None

    def _message(self, flat):
        """Fill a group's message: every gradient (zeros where a parameter has none) and
        the has-gradient flags."""
        present = flat.gather()
        for where in np.flatnonzero(~present):
            flat.grad[flat.slices[where]] = 0
        flat.flags[:] = present

    def _fold_micro_batch(self):
        """Deterministic mode: add this micro-batch's gradients (and flags) to the tree as
        its next leaf, and clear them for the next micro-batch."""
        for flat, tree in zip(self.optimizer.flat_groups, self._trees):
            self._message(flat)
            # One leaf per update needs no copy: the next backward comes after the update.
            tree.add(flat.message if self.backward_passes_per_step == 1 else flat.message.copy())
        self.optimizer.zero_grad()

    def _average(self, index, flat, scale):
        """Sum the group's gradients and flags over the ranks in place, and scale the
        gradients by `scale` (1 / the number of terms in the sum)."""
        if self.compression == "fp16":
            message = self._fp16_messages.get(index)
            if message is None or message.size != flat.message.size:
                message = self._fp16_messages[index] = np.empty(flat.message.size, np.float16)
            np.multiply(flat.message, scale, out=message, casting="same_kind")
            self.comm.allreduce_(message)
            np.copyto(flat.message, message)
        else:
            self.comm.allreduce_(flat.message)
            if scale != 1:
                flat.grad *= flat.grad.dtype.type(scale)

    def __repr__(self):
        mode = f", deterministic, micro_batches={self.micro_batches}" if self.deterministic else ""
        return (f"DistributedOptimizer(size={self.comm.size}, backward_passes_per_step="
                f"{self.backward_passes_per_step}, compression={self.compression!r}{mode},\n"
                f"{self.optimizer!r})")
