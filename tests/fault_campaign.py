"""The fault-injection trials of test_launch_faults.py, many times over, with a tally:

    python tests/fault_campaign.py --trials 10          # SIGTERM, SIGUSR1, SIGINT x 10
    python tests/fault_campaign.py --trials 20 --kinds SIGKILL --ranks 2 4
    python tests/fault_campaign.py --trials 10 --kinds SIGKILL SIGTERM --deterministic

Each trial starts `mpirun -n R python -m numpy_dl.launch train`, sends the fault at a
seeded random moment once training runs, and checks: the exit code (75 after a signal,
non-zero after a killed rank), the seconds from the fault to the exit, that every
checkpoint left verifies, and that `--resume auto` finishes bitwise equal to a run never
interrupted, metrics.jsonl included. With --deterministic the job runs in deterministic
mode at -n 4 and resumes at -n 2, and must end in the bytes of an uninterrupted -n 1 run.
Prints one line per trial and a summary."""
import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import test_launch_faults  # noqa: E402
from distributed_helpers import output_of, run  # noqa: E402
from test_launch_faults import STOPPED, check_and_resume, command, final_state, interrupt  # noqa: E402

DETERMINISTIC = ["--deterministic", "--micro-batches", "8"]


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=10)
    parser.add_argument("--kinds", nargs="+", default=["SIGTERM", "SIGUSR1", "SIGINT"])
    parser.add_argument("--ranks", nargs="+", type=int, default=[2, 4])
    parser.add_argument("--deterministic", action="store_true",
                        help="fault at -n 4, resume at -n 2, compare with -n 1")
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="numpy_dl_faults_"))
    reference = {}
    if args.deterministic:
        test_launch_faults.TRAIN = test_launch_faults.TRAIN + DETERMINISTIC
        args.ranks = [4]
    for ranks in [1] if args.deterministic else args.ranks:
        result, _ = run(command(ranks, root / f"reference{ranks}"), timeout=600)
        assert result.returncode == 0, output_of(result)
        reference[ranks] = final_state(root / f"reference{ranks}")
    if args.deterministic:  # what -n 2 must resume to: the bytes of -n 1
        reference = {2: reference[1]}
    resume_ranks = {ranks: 2 if args.deterministic else ranks for ranks in args.ranks}
    tally = {}
    for kind in args.kinds:
        for ranks in args.ranks:
            for trial in range(args.trials):
                out = root / f"{kind}-{ranks}-{trial}"
                started = time.monotonic()
                try:
                    seed = 1000 * trial + 10 * ranks + args.kinds.index(kind)
                    code, seconds, err = interrupt(ranks, out, kind, seed)
                    expected = code != 0 if kind == "SIGKILL" else code == STOPPED
                    assert expected, f"exit code {code}: {err[-300:]}"
                    assert seconds < (30 if kind == "SIGKILL" else 10), f"{seconds:.1f} s to exit"
                    check_and_resume(resume_ranks[ranks], out, reference)
                    outcome = f"ok: exit {code} {seconds:.2f} s after the fault, resumed bitwise"
                    passed = True
                except (AssertionError, pytest.fail.Exception) as problem:
                    outcome, passed = f"FAILED: {str(problem).splitlines()[0][:200]}", False
                tally.setdefault((kind, ranks), []).append(passed)
                took = time.monotonic() - started
                print(f"{kind} -n {ranks} trial {trial}: {outcome} ({took:.0f} s)", flush=True)
    print("summary:")
    for (kind, ranks), results in tally.items():
        print(f"  {kind} at -n {ranks}: {sum(results)} of {len(results)} passed")


if __name__ == "__main__":
    main()
