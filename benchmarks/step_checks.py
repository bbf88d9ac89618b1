"""What the training loop's per-step checks cost, next to the training step itself.

    python benchmarks/step_checks.py            # one process
    mpirun -n 2 python benchmarks/step_checks.py

Every step of `train` makes two checks beyond the step (numpy_dl/launch/train.py): the
non-finite test of the averaged gradient (one BLAS dot product over the flat gradient
buffer) and the `Control` all-reduce of three numbers in which the ranks agree on a stop
signal, a non-finite loss and a timed checkpoint. This times each, interleaved with full
training steps of the guide's models at batch 128 per rank, and prints them as a share
of the step. Medians over repeats, warm-up excluded.
"""
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from numpy_dl import distributed, runtime  # noqa: E402
from numpy_dl.launch.signals import StopRequests  # noqa: E402
from numpy_dl.launch.train import Control, finite_square  # noqa: E402
from step_time import MODELS, numpy_dl_step  # noqa: E402

runtime.keep_freed_memory()  # as the launcher does


def median_seconds(action, repeats, comm):
    times = []
    for _ in range(repeats + 1):
        comm.barrier()
        start = time.perf_counter()
        action()
        times.append(time.perf_counter() - start)
    return float(np.median(times[1:]))


def main():
    comm = distributed.init()
    runtime.set_blas_threads(1)
    stops = StopRequests(comm)
    if comm.is_main:
        print(f"# {comm.size} rank{'s' * (comm.size > 1)}, 1 BLAS thread per rank, batch 128 "
              f"per rank; medians")
        print(f"{'model':9} {'step ms':>8} {'finite ms':>10} {'control ms':>11} {'share':>7}")
    for name in MODELS:
        model, step = numpy_dl_step(name, 128)
        step()  # gradients to check: the same size as the flat buffer
        flat = np.concatenate([p.grad.ravel() for p in model.parameters()])
        step_s = median_seconds(step, 10, comm)
        finite_s = median_seconds(lambda: finite_square(flat), 50, comm)
        control_s = median_seconds(lambda: Control(comm, stops, True, False), 50, comm)
        if comm.is_main:
            print(f"{name:9} {step_s * 1e3:8.2f} {finite_s * 1e3:10.3f} {control_s * 1e3:11.3f} "
                  f"{(finite_s + control_s) / step_s:7.2%}", flush=True)


if __name__ == "__main__":
    main()
