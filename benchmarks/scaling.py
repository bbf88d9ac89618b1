"""Weak scaling of data-parallel training: samples/s of the four guide models at
`mpirun -n 1, 2, 4` (one BLAS thread per rank, local batch 128 per rank), and the
efficiency samples/s(n) / (n x samples/s(1)).

    python benchmarks/scaling.py                     # -n 1 2 4, all models
    python benchmarks/scaling.py --ranks 1 2 --models vae

Each rank runs full training steps (forward, loss, backward, gradient all-reduce through
DistributedOptimizer, Adam) on its own random batch; a round's time is the slowest
rank's, and the rate comes from the median round. The last column runs the same ranks
with the all-reduce skipped (each rank trains alone): the efficiency the machine itself
allows when n processes share its caches and memory, so the difference between the two
columns is what communication costs. More ranks than cores oversubscribe the machine.
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


def worker(model_name, batch_size, steps, rounds, communicate):
    """One rank's part: time `rounds` x `steps` training steps; rank 0 prints JSON."""
    from threadpoolctl import threadpool_limits
    threadpool_limits(1)
    from numpy_dl import distributed
    from step_time import numpy_dl_step

    comm = distributed.init()

    def distribute(model, optimizer):
        distributed.broadcast_parameters(model, comm)
        return distributed.DistributedOptimizer(optimizer, comm=comm) if communicate else optimizer
    _, step = numpy_dl_step(model_name, batch_size, distribute, data_seed=comm.rank)
    for _ in range(3):
        step()
    seconds = np.zeros(rounds)
    for i in range(rounds):
        comm.barrier()
        start = time.perf_counter()
        for _ in range(steps):
            step()
        seconds[i] = time.perf_counter() - start
    slowest = comm.allreduce_(seconds, op="max")
    if comm.is_main:
        print(json.dumps({"model": model_name, "ranks": comm.size,
                          "samples_per_s": comm.size * batch_size * steps / np.median(slowest)}))


def mpirun():
    beside = os.path.join(os.path.dirname(sys.executable), "mpirun")
    found = beside if os.path.exists(beside) else shutil.which("mpirun")
    if found is None:
        sys.exit("scaling.py needs mpirun (pip install mpi4py mpich)")
    return found


def samples_per_s(name, ranks, args, communicate):
    steps = args.steps if not name.startswith("conv") else max(3, args.steps // 5)
    command = [mpirun(), "-n", str(ranks), sys.executable, os.path.abspath(__file__),
               "--worker", name, "--batch-size", str(args.batch_size), "--steps", str(steps),
               "--rounds", str(args.rounds)] + ([] if communicate else ["--no-allreduce"])
    env = dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", PYTHONPATH=HERE)
    out = subprocess.run(command, capture_output=True, text=True, env=env, timeout=900)
    if out.returncode != 0:
        sys.exit(f"mpirun -n {ranks} failed:\n{out.stderr}")
    return json.loads(out.stdout.strip().splitlines()[-1])["samples_per_s"]


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", default=["ae", "vae", "conv-ae", "conv-vae"])
    parser.add_argument("--ranks", nargs="+", type=int, default=[1, 2, 4])
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--steps", type=int, default=20, help="steps per round (MLPs)")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--worker", metavar="MODEL", help=argparse.SUPPRESS)
    parser.add_argument("--no-allreduce", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args.worker, args.batch_size, args.steps, args.rounds, not args.no_allreduce)
        return
    print(f"# weak scaling, local batch {args.batch_size} per rank, 1 BLAS thread per rank, "
          f"{os.cpu_count()} cores")
    print(f"{'model':9} {'ranks':>5} {'samples/s':>10} {'efficiency':>10} {'no all-reduce':>14}")
    for name in args.models:
        base = samples_per_s(name, 1, args, communicate=True)
        for ranks in args.ranks:
            rate = base if ranks == 1 else samples_per_s(name, ranks, args, communicate=True)
            alone = base if ranks == 1 else samples_per_s(name, ranks, args, communicate=False)
            print(f"{name:9} {ranks:>5} {rate:10.0f} {rate / (ranks * base):10.2f} "
                  f"{alone / (ranks * base):14.2f}", flush=True)


if __name__ == "__main__":
    main()
