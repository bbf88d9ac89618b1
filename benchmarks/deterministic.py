"""What deterministic mode costs: a training step of the four guide models in the default
mode and in deterministic mode, side by side, at `mpirun -n 1` and `-n 2`.

    python benchmarks/deterministic.py            # launches both rank counts itself

Local batch 128 per rank, one BLAS thread per rank, one micro-batch per rank
(micro_batches = the rank count): the same work per rank, so the difference is the
reduction itself: deterministic mode copies the gradient into its tree and exchanges it
with a Sendrecv and an addition, where the default mode makes one Allreduce. The two
step functions alternate within rounds; each rank count is its own launch; the slowest
rank's median counts.
"""
import argparse
import json
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))


def worker(args):
    from numpy_dl import distributed, runtime
    from numpy_dl.distributed import DistributedOptimizer
    from step_time import MODELS, numpy_dl_step, time_rounds
    import numpy as np
    runtime.keep_freed_memory()  # as the launcher does
    comm = distributed.init()
    runtime.set_blas_threads(1)
    for name in MODELS:
        _, default = numpy_dl_step(name, args.batch_size,
                                   lambda model, inner: DistributedOptimizer(inner, comm=comm))
        _, deterministic = numpy_dl_step(name, args.batch_size, lambda model, inner: (
            DistributedOptimizer(inner, comm=comm, deterministic=True, micro_batches=comm.size)))
        per_round = args.steps if not name.startswith("conv") else max(2, args.steps // 4)
        seconds = np.array(time_rounds([default, deterministic], args.rounds, per_round))
        slowest = comm.allreduce_(seconds, op="max")
        if comm.is_main:
            print(json.dumps({"model": name, "ranks": comm.size, "default_ms": slowest[0] * 1e3,
                              "deterministic_ms": slowest[1] * 1e3}), flush=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ranks", nargs="+", type=int, default=[1, 2])
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--steps", type=int, default=10, help="steps per round (MLPs)")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        return worker(args)
    mpirun = os.path.join(os.path.dirname(sys.executable), "mpirun")
    env = dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", PYTHONPATH=HERE)
    print(f"# local batch {args.batch_size} per rank, 1 BLAS thread per rank, one "
          f"micro-batch per rank; medians of {args.rounds} alternating rounds, slowest rank")
    print(f"{'model':9} {'ranks':>5} {'default ms':>11} {'determ. ms':>11} {'ratio':>6}")
    for ranks in args.ranks:
        command = [mpirun, "-n", str(ranks), sys.executable, os.path.abspath(__file__), "--worker",
                   "--batch-size", str(args.batch_size), "--steps", str(args.steps),
                   "--rounds", str(args.rounds)]
        out = subprocess.run(command, capture_output=True, text=True, env=env, timeout=1800)
        if out.returncode != 0:
            sys.exit(f"mpirun -n {ranks} failed:\n{out.stderr}")
        for line in out.stdout.splitlines():
            row = json.loads(line)
            print(f"{row['model']:9} {row['ranks']:>5} {row['default_ms']:11.2f} "
                  f"{row['deterministic_ms']:11.2f} "
                  f"{row['deterministic_ms'] / row['default_ms']:6.2f}", flush=True)


if __name__ == "__main__":
    main()
