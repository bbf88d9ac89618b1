"""Per-step gradient all-reduce time of the four guide models, next to a bare MPI
Allreduce of the same number of bytes.

    mpirun -n 2 python benchmarks/allreduce.py [--repeats 200]

For each model, "wrapper" is the averaging that DistributedOptimizer.step() runs before
the wrapped step, after a backward pass: gather the gradients into the flat buffer, one
in-place Allreduce of its gradients and has-gradient flags, the division by the number of
ranks (one pass over the buffer), and the rebinding of `.grad`. "bare" is
`Allreduce(IN_PLACE, buffer)` of a float32 buffer of as many bytes, on a communicator of
its own. The two run interleaved, each after a Barrier and each first in turn, so both see
the same machine and the same caches; a repeat's time is the slowest rank's; the table
shows medians over repeats (warm-up excluded), the ratio wrapper / bare (the target is at
most 1.1), and, timed separately after them, the wrapper with fp16 compression for
comparison.
"""
import argparse
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from numpy_dl import distributed, models, runtime  # noqa: E402
from numpy_dl.optim import Adam  # noqa: E402

runtime.keep_freed_memory()  # as the launcher does

MODELS = {
    "ae": lambda: models.Autoencoder(784, [512, 256], 64),
    "vae": lambda: models.VariationalAutoencoder(784, [512, 256], 64),
    "conv-ae": lambda: models.ConvAutoencoder(1, 32, 128, 28),
    "conv-vae": lambda: models.ConvVariationalAutoencoder(1, 32, 128, 28),
}
WARMUP = 10


def wrapper_averaging(make_model, comm, compression):
    """(untimed preparation, averaging) as `timed` takes them: the averaging that
    DistributedOptimizer.step() runs before the wrapped step, prepared by what a training
    step does between two averagings (zero_grad(), a backward pass writing the gradients
    into the flat buffer); and the size of its message, in float32 items."""
    model = make_model()
    optimizer = distributed.DistributedOptimizer(Adam(model.parameters()), comm=comm,
                                                 compression=compression)
    gradients = np.random.default_rng(comm.rank).normal(
        size=sum(param.data.size for param in model.parameters())).astype(np.float32)

    def backward_pass():
        optimizer.zero_grad()
        np.copyto(optimizer.flat_groups[0].grad, gradients)
        for param in model.parameters():
            param.grad = param.grad_slot
    backward_pass()
    optimizer.step()  # creates the optimizer's state, outside the timings
    return (backward_pass, optimizer._average_gradients), optimizer.flat_groups[0].message.size


def timed(action, barrier):
    """Seconds of `action` (a function, or (untimed preparation, function))."""
    prepare, action = action if isinstance(action, tuple) else (None, action)
    if prepare is not None:
        prepare()
    barrier()
    start = time.perf_counter()
    action()
    return time.perf_counter() - start


def interleaved(actions, barrier, repeats):
    """Seconds (slowest rank) of each action per repeat, warm-up excluded. The actions
    take turns at going first, so each follows each other one equally often and none
    inherits colder caches than the others."""
    times = np.zeros((WARMUP + repeats, len(actions)))
    for repeat in range(WARMUP + repeats):
        for index in np.roll(np.arange(len(actions)), repeat):
            times[repeat, index] = timed(actions[index], barrier)
    return times[WARMUP:]


def measure(make_model, comm, bare_comm, repeats):
    """Median seconds of the bare Allreduce, the wrapper, and (timed on its own, after)
    the wrapper with fp16 compression, with the median ratio wrapper / bare."""
    from mpi4py import MPI
    plain, size = wrapper_averaging(make_model, comm, None)
    values = np.random.default_rng(comm.rank).normal(size=size).astype(np.float32)
    buffer = np.empty_like(values)
    bare = (lambda: np.copyto(buffer, values),  # written just before, as the wrapper's
            lambda: bare_comm.Allreduce(MPI.IN_PLACE, buffer, op=MPI.SUM))
    pair = interleaved([bare, plain], bare_comm.Barrier, repeats)
    compressed = interleaved([wrapper_averaging(make_model, comm, "fp16")[0]],
                             bare_comm.Barrier, repeats)
    times = np.concatenate([pair, compressed], axis=1)
    bare_comm.Allreduce(MPI.IN_PLACE, times, op=MPI.MAX)
    ratio = np.median(times[:, 1] / times[:, 0])  # of neighbours in time: drift cancels
    return np.median(times, axis=0), ratio, buffer.size


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=200)
    args = parser.parse_args()
    comm = distributed.init()
    if comm.size < 2:
        sys.exit("run it under MPI, e.g. mpirun -n 2 python benchmarks/allreduce.py")
    from mpi4py import MPI
    bare_comm = MPI.COMM_WORLD.Clone()
    rows = []
    for name, make_model in MODELS.items():
        (bare, wrapper, fp16), ratio, size = measure(make_model, comm, bare_comm, args.repeats)
        rows.append(f"{name:9s} {size:>10,d} {size * 4 / 2**20:8.2f} {bare * 1e3:10.3f} "
                    f"{wrapper * 1e3:10.3f} {ratio:7.3f} {fp16 * 1e3:10.3f}")
    if comm.is_main:
        print(f"{comm.size} ranks, {MPI.Get_library_version().splitlines()[0].strip()}, "
              f"medians of {args.repeats} repeats (slowest rank)")
        print(f"{'model':9s} {'params':>10s} {'MiB':>8s} {'bare ms':>10s} {'wrapper ms':>10s} "
              f"{'ratio':>7s} {'fp16 ms':>10s}")
        print("\n".join(rows))


if __name__ == "__main__":
    main()
