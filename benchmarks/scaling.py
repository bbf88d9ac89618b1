"""Weak scaling of data-parallel training: samples/s of the four guide models at
`mpirun -n 1, 2, 4` (one BLAS thread per rank, local batch 128 per rank), and the
efficiency samples/s(n) / (n x samples/s(1)).

    python benchmarks/scaling.py                     # -n 1 2 4, all models
    python benchmarks/scaling.py --ranks 1 2 --models vae

Each rank runs full training steps (forward, loss, backward, gradient all-reduce through
DistributedOptimizer, Adam) on its own random batch; the step time of a run is the slowest
rank's. More ranks than cores oversubscribe the machine, which the efficiency then shows.
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


def worker(model_name, batch_size, steps):
    """One rank's part: time `steps` training steps; rank 0 prints the result as JSON."""
    from threadpoolctl import threadpool_limits
    threadpool_limits(1)
    import numpy_dl as ndl
    from numpy_dl import distributed
    from numpy_dl.optim import Adam
    from step_time import MODELS, is_vae
    from numpy_dl.loss import MSELoss, VAELoss

    comm = distributed.init()
    ndl.manual_seed(0)
    model = MODELS[model_name][0]()
    distributed.broadcast_parameters(model, comm)
    optimizer = distributed.DistributedOptimizer(Adam(model.parameters()), comm=comm)
    criterion = VAELoss() if is_vae(model_name) else MSELoss()
    rng = np.random.default_rng(comm.rank)
    x = ndl.tensor(rng.random((batch_size,) + MODELS[model_name][1], dtype=np.float32))

    def step():
        optimizer.zero_grad()
        out = model(x)
        loss = criterion(out[0], x, out[1], out[2]) if is_vae(model_name) else criterion(out, x)
        loss.backward()
        optimizer.step()
    for _ in range(3):
        step()
    comm.barrier()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    elapsed = np.array([time.perf_counter() - start])
    slowest = comm.allreduce_(elapsed, op="max")[0]
    if comm.is_main:
        print(json.dumps({"model": model_name, "ranks": comm.size,
                          "samples_per_s": comm.size * batch_size * steps / slowest}))


def mpirun():
    beside = os.path.join(os.path.dirname(sys.executable), "mpirun")
    found = beside if os.path.exists(beside) else shutil.which("mpirun")
    if found is None:
        sys.exit("scaling.py needs mpirun (pip install mpi4py mpich)")
    return found


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", default=["ae", "vae", "conv-ae", "conv-vae"])
    parser.add_argument("--ranks", nargs="+", type=int, default=[1, 2, 4])
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--worker", metavar="MODEL", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args.worker, args.batch_size, args.steps)
        return
    env = dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", PYTHONPATH=HERE)
    print(f"# weak scaling, local batch {args.batch_size} per rank, 1 BLAS thread per rank, "
          f"{os.cpu_count()} cores")
    print(f"{'model':9} {'ranks':>5} {'samples/s':>10} {'efficiency':>10}")
    for name in args.models:
        base = None
        for ranks in args.ranks:
            steps = args.steps if not name.startswith("conv") else max(5, args.steps // 4)
            command = [mpirun(), "-n", str(ranks), sys.executable, os.path.abspath(__file__),
                       "--worker", name, "--batch-size", str(args.batch_size), "--steps", str(steps)]
            out = subprocess.run(command, capture_output=True, text=True, env=env, timeout=900)
            if out.returncode != 0:
                sys.exit(f"mpirun -n {ranks} failed:\n{out.stderr}")
            rate = json.loads(out.stdout.strip().splitlines()[-1])["samples_per_s"]
            base = base or rate / ranks
            print(f"{name:9} {ranks:>5} {rate:10.0f} {rate / (ranks * base):10.2f}", flush=True)


if __name__ == "__main__":
    main()
