"""The default `train` at several rank counts: the same model (a global batch of 32, the
same steps), sooner with more ranks. Prints each count's wall time and final validation
loss side by side, and with --curves the validation loss of every epoch.

    python benchmarks/rank_count.py                      # 1, 2 and 8 ranks
    python benchmarks/rank_count.py --ranks 1 2 --repeats 3 --curves

Each run is `python -m numpy_dl.launch train --out TMP` (one rank: no mpirun, as a user
debugging would run it; more: `mpirun -n R` in front), timed from start to exit, start-up
included; with --repeats the runs are interleaved (1, 2, 8, 1, 2, 8, ...) and the table
gives the median and the range. More ranks than cores are marked oversubscribed: they
still train the same model, but their times measure the contention, not the scaling.
Options after `--` go to every `train` (e.g. `-- --epochs 20`).
"""
import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def train(ranks, out, extra):
    """(seconds, metrics records) of one default run at `ranks`."""
    command = [sys.executable, "-m", "numpy_dl.launch", "train", "--out", out, *extra]
    if ranks > 1:
        mpirun = os.path.join(os.path.dirname(sys.executable), "mpirun")
        command = [mpirun, "-n", str(ranks), *command]
    started = time.perf_counter()
    result = subprocess.run(command, capture_output=True, text=True, cwd=REPO,
                            env=dict(os.environ, PYTHONPATH=REPO))
    seconds = time.perf_counter() - started
    if result.returncode != 0:
        sys.exit(f"{' '.join(command)} failed ({result.returncode}):\n{result.stderr}")
    with open(os.path.join(out, "metrics.jsonl")) as file:
        return seconds, [json.loads(line) for line in file]


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ranks", nargs="+", type=int, default=[1, 2, 8])
    parser.add_argument("--repeats", type=int, default=1, help="interleaved runs per count")
    parser.add_argument("--curves", action="store_true",
                        help="also print the validation loss of every epoch at each count")
    parser.add_argument("extra", nargs=argparse.REMAINDER,
                        help="-- and options for every train")
    args = parser.parse_args()
    extra = args.extra[1:] if args.extra[:1] == ["--"] else args.extra
    cores = len(os.sched_getaffinity(0))
    times = {ranks: [] for ranks in args.ranks}
    curves, steps = {}, {}
    with tempfile.TemporaryDirectory() as root:
        for repeat in range(args.repeats):
            for ranks in args.ranks:
                out = os.path.join(root, f"{ranks}-{repeat}")
                seconds, records = train(ranks, out, extra)
                times[ranks].append(seconds)
                curves[ranks] = [(r["epoch"], r.get("val_loss", math.nan)) for r in records]
                last = records[-1]
                steps[ranks] = last["step"]
                print(f"# run {repeat + 1}: {ranks} rank{'s' * (ranks > 1)}, {seconds:.2f} s, "
                      f"step {last['step']}, final val loss {last['val_loss']:.4f}", flush=True)
    print(f"# train {' '.join(extra) or '(defaults)'}; {cores} cores; wall time including "
          f"start-up, median (lowest-highest) of {args.repeats}")
    print(f"{'ranks':>5} {'steps':>6} {'final val loss':>15} {'wall s':>7}  range")
    for ranks in args.ranks:
        runs = times[ranks]
        note = "  oversubscribed" if ranks > cores else ""
        print(f"{ranks:>5} {steps[ranks]:>6} {curves[ranks][-1][1]:>15.4f} "
              f"{statistics.median(runs):>7.2f}  "
              f"{min(runs):.2f}-{max(runs):.2f}{note}")
    if args.curves:
        print("\nepoch " + " ".join(f"{f'val loss -n {ranks}':>16}" for ranks in args.ranks))
        for row in zip(*(curves[ranks] for ranks in args.ranks)):
            print(f"{row[0][0]:>5} " + " ".join(f"{value:>16.4f}" for _, value in row))


if __name__ == "__main__":
    main()
