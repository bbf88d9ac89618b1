"""How many BLAS threads a single-process `train` should use, on a quiet and on a busy machine.

    python benchmarks/threads.py                      # the default run, 10 epochs
    python benchmarks/threads.py --epochs 60 --dataset mnist-5k --model conv-vae

Runs `python -m numpy_dl.launch train` (the default run unless options say otherwise)
with `--threads 1` (the default), and with every core (`--threads 0`), first on a quiet
machine, then with every core kept busy by as many spinning processes as there are
cores (a shared node, or a laptop compiling something). The runs alternate, and each
configuration's median wall time is printed beside the ratio to `--threads 1`. The
built-in models' matrices are small: threads cost more in synchronisation than they
save, and when the cores are busy a thread that waits for a descheduled sibling stalls
the whole GEMM.
"""
import argparse
import multiprocessing
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def spin():
    while True:
        pass


def train_seconds(threads, epochs, extra, out):
    command = [sys.executable, "-m", "numpy_dl.launch", "train", "--epochs", str(epochs),
               "--threads", str(threads), "--out", out, *extra]
    env = {**os.environ, "PYTHONPATH": REPO}
    for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        env.pop(name, None)  # --threads decides
    start = time.perf_counter()
    subprocess.run(command, check=True, capture_output=True, env=env, cwd=REPO)
    return time.perf_counter() - start


def measure(settings, args, extra):
    times = {threads: [] for threads in settings}
    with tempfile.TemporaryDirectory() as scratch:
        for repeat in range(args.repeats):
            for threads in settings:
                out = os.path.join(scratch, f"run-{threads}-{repeat}")
                times[threads].append(train_seconds(threads, args.epochs, extra, out))
    return {threads: float(np.median(seconds)) for threads, seconds in times.items()}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=2)
    args, extra = parser.parse_known_args()
    cores = len(os.sched_getaffinity(0))
    settings = (1, 0)
    print(f"train {' '.join(extra) or '(default run)'}, {args.epochs} epochs, one process, "
          f"{cores} cores; median of {args.repeats} alternating runs")
    print(f"{'machine':8} {'--threads':>9} {'BLAS threads':>12} {'seconds':>8} {'/ threads 1':>11}")
    for machine in ("quiet", "busy"):
        spinners = []
        if machine == "busy":
            spinners = [multiprocessing.Process(target=spin, daemon=True) for _ in range(cores)]
            for process in spinners:
                process.start()
        try:
            seconds = measure(settings, args, extra)
        finally:
            for process in spinners:
                process.terminate()
        for threads in settings:
            blas = threads or cores
            print(f"{machine:8} {threads:>9} {blas:>12} {seconds[threads]:8.1f} "
                  f"{seconds[threads] / seconds[1]:11.2f}")


if __name__ == "__main__":
    main()
