"""Weak scaling of data-parallel training: samples/s of the four guide models at
`mpirun -n 1, 2, 4` (one BLAS thread per rank, local batch 128 per rank), and the
efficiency samples/s(n) / (n x samples/s(1)).

    python benchmarks/scaling.py                     # -n 1 2 4, all models
    python benchmarks/scaling.py --ranks 1 2 --models vae --repeats 5

Each rank runs full training steps (forward, loss, backward, gradient all-reduce through
DistributedOptimizer, Adam) on its own random batch; a round's time is the slowest
rank's, and a launch's rate comes from its median round. `no all-reduce` runs the same
ranks with the all-reduce skipped (each rank trains alone): the efficiency the machine
itself allows when n processes share its caches and memory, so the difference between
the two is what communication costs. `all-reduce ms` is the median time per step spent
averaging the gradients (`synchronize()`), waiting for the other ranks included; `alone
ms` is an all-reduce of as many float32 numbers by itself, started right after a barrier
so that no rank waits: the difference is time spent waiting for the slowest rank.

The launches are interleaved: every repeat runs -n 1 and then each larger n, and an
efficiency is computed against the -n 1 run of its own repeat, so a slow spell of a
shared machine hits both sides of a ratio. The table shows medians over the repeats and,
in brackets, the lowest and highest. More ranks than cores oversubscribe the machine.
"""
import argparse
import json
import os
import shutil
import subprocess
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))


class TimedAveraging:
    """A DistributedOptimizer whose step() first times the gradient averaging."""

    def __init__(self, optimizer):
        self.optimizer, self.seconds = optimizer, []

    def zero_grad(self):
        self.optimizer.zero_grad()

    def step(self):
        start = time.perf_counter()
        self.optimizer.synchronize()
        self.seconds.append(time.perf_counter() - start)
        self.optimizer.step()


def worker(model_name, batch_size, steps, rounds, communicate, overlap):
    """One rank's part: time `rounds` x `steps` training steps; rank 0 prints JSON."""
    from threadpoolctl import threadpool_limits
    threadpool_limits(1)
    from numpy_dl import distributed
    from step_time import numpy_dl_step

    comm = distributed.init()
    timed = []

    def distribute(model, optimizer):
        distributed.broadcast_parameters(model, comm)
        if not communicate:
            return optimizer
        timed.append(TimedAveraging(distributed.DistributedOptimizer(optimizer, comm=comm,
                                                                     overlap=overlap)))
        return timed[0]
    model, step = numpy_dl_step(model_name, batch_size, distribute, data_seed=comm.rank)
    for _ in range(3):
        step()
    seconds = np.zeros(rounds)
    for i in range(rounds):
        if timed:
            timed[0].seconds.clear()
        comm.barrier()
        start = time.perf_counter()
        for _ in range(steps):
            step()
        seconds[i] = time.perf_counter() - start
    slowest = comm.allreduce_(seconds, op="max")
    averaging = comm.allreduce_(np.array([np.median(timed[0].seconds) if timed else 0.0]),
                                op="max")
    # The all-reduce by itself: a gradient's worth of float32 right after a barrier, so no
    # rank waits for a slower one; the rest of `averaging` is that waiting.
    message = np.zeros(sum(p.data.size for p in model.parameters()), dtype=np.float32)
    alone = np.zeros(20)
    for i in range(len(alone)):
        comm.barrier()
        start = time.perf_counter()
        comm.allreduce_(message)
        alone[i] = time.perf_counter() - start
    alone = comm.allreduce_(np.array([np.median(alone)]), op="max")
    if comm.is_main:
        print(json.dumps({"samples_per_s": comm.size * batch_size * steps / np.median(slowest),
                          "allreduce_ms": float(averaging[0]) * 1e3,
                          "allreduce_alone_ms": float(alone[0]) * 1e3}))


def mpirun():
    beside = os.path.join(os.path.dirname(sys.executable), "mpirun")
    found = beside if os.path.exists(beside) else shutil.which("mpirun")
    if found is None:
        sys.exit("scaling.py needs mpirun (pip install mpi4py mpich)")
    return found


def launch(name, ranks, args, communicate, overlap=False):
    """samples/s, all-reduce ms/step, and ms of the all-reduce alone, of one `mpirun -n
    ranks` run."""
    steps = args.steps if not name.startswith("conv") else max(3, args.steps // 5)
    command = [mpirun(), "-n", str(ranks), sys.executable, os.path.abspath(__file__),
               "--worker", name, "--batch-size", str(args.batch_size), "--steps", str(steps),
               "--rounds", str(args.rounds)] + ([] if communicate else ["--no-allreduce"])
    command += ["--overlap"] if overlap else []
    env = dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", PYTHONPATH=HERE)
    out = subprocess.run(command, capture_output=True, text=True, env=env, timeout=900)
    if out.returncode != 0:
        sys.exit(f"mpirun -n {ranks} failed:\n{out.stderr}")
    result = json.loads(out.stdout.strip().splitlines()[-1])
    return result["samples_per_s"], result["allreduce_ms"], result["allreduce_alone_ms"]


def spread(values, digits):
    values = np.asarray(values)
    return (f"{np.median(values):.{digits}f} ({values.min():.{digits}f}-"
            f"{values.max():.{digits}f})")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", default=["ae", "vae", "conv-ae", "conv-vae"])
    parser.add_argument("--ranks", nargs="+", type=int, default=[1, 2, 4])
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--steps", type=int, default=20, help="steps per round (MLPs)")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=3, help="interleaved launches per row")
    parser.add_argument("--worker", metavar="MODEL", help=argparse.SUPPRESS)
    parser.add_argument("--no-allreduce", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--overlap", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args.worker, args.batch_size, args.steps, args.rounds, not args.no_allreduce,
               args.overlap)
        return
    larger = [n for n in args.ranks if n > 1]
    print(f"# weak scaling, local batch {args.batch_size} per rank, 1 BLAS thread per rank, "
          f"{os.cpu_count()} cores; medians (lowest-highest) of {args.repeats} repeats")
    print(f"{'model':9} {'ranks':>5} {'samples/s':>10} {'all-reduce ms':>18} {'alone ms':>18} "
          f"{'efficiency':>17} {'overlap':>17} {'no all-reduce':>17}")
    for name in args.models:
        runs = {n: {"rate": [], "ms": [], "alone ms": [], "efficiency": [], "overlap": [],
                    "alone": []} for n in [1] + larger}
        for _ in range(args.repeats):
            base, base_ms, base_alone_ms = launch(name, 1, args, communicate=True)
            runs[1]["rate"].append(base)
            runs[1]["ms"].append(base_ms)
            runs[1]["alone ms"].append(base_alone_ms)
            for n in larger:
                rate, ms, alone_ms = launch(name, n, args, communicate=True)
                overlapped, _, _ = launch(name, n, args, communicate=True, overlap=True)
                alone, _, _ = launch(name, n, args, communicate=False)
                runs[n]["rate"].append(rate)
                runs[n]["ms"].append(ms)
                runs[n]["alone ms"].append(alone_ms)
                runs[n]["efficiency"].append(rate / (n * base))
                runs[n]["overlap"].append(overlapped / (n * base))
                runs[n]["alone"].append(alone / (n * base))
        for n, run in runs.items():
            efficiency = spread(run["efficiency"], 2) if n > 1 else "1.00"
            overlapped = spread(run["overlap"], 2) if n > 1 else "1.00"
            alone = spread(run["alone"], 2) if n > 1 else "1.00"
            print(f"{name:9} {n:>5} {np.median(run['rate']):10.0f} {spread(run['ms'], 2):>18} "
                  f"{spread(run['alone ms'], 2):>18} {efficiency:>17} {overlapped:>17} "
                  f"{alone:>17}", flush=True)


if __name__ == "__main__":
    main()
