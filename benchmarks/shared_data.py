"""Memory of ranks that train from one memory-mapped `.npy` file, against an in-memory one.

    python benchmarks/shared_data.py                       # 8 ranks, 100,000 images
    python benchmarks/shared_data.py --ranks 8 --images 100000 --limit-mib 0
    python benchmarks/shared_data.py --only-mapped --images 2500000 --limit-mib 1024

Writes a synthetic dataset of uint8 28x28 images twice: as a `.npy` file, which the
launcher memory-maps (numpy_dl/data/mapped.py), and as a `.npz`, which it reads into each
rank's memory as float32. For each it runs `mpirun -n R python -m numpy_dl.launch train`
on a small MLP autoencoder for one epoch and samples every rank's /proc/PID/smaps_rollup
twice a second: the largest total PSS of the ranks (proportional set size: a page shared
by 8 ranks counts 1/8 in each, so the total is the job's real footprint) and the
largest RSS of one rank, beside the file's size.

With `--limit-mib M`, the `.npy` run goes into a cgroup (v1 memory controller, as root)
whose memory is limited to M MiB: a file larger than that still trains, the kernel
paging samples in and out of the page cache.
"""
import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CGROUP = "/sys/fs/cgroup/memory"


def write_dataset(directory, count, seed=0):
    """`count` uint8 28x28 images as a .npy file, written a chunk at a time."""
    path = os.path.join(directory, "images.npy")
    images = np.lib.format.open_memmap(path, mode="w+", dtype=np.uint8, shape=(count, 28, 28))
    rng = np.random.default_rng(seed)
    for start in range(0, count, 65536):
        stop = min(count, start + 65536)
        images[start:stop] = rng.integers(0, 256, (stop - start, 28, 28), dtype=np.uint8)
    images.flush()
    del images
    # Out of the page cache, so the job reads it afresh (and a memory-limited job's cgroup,
    # not this process's, is charged for the pages it reads).
    with open(path, "rb") as file:
        os.fsync(file.fileno())
        os.posix_fadvise(file.fileno(), 0, 0, os.POSIX_FADV_DONTNEED)
    return path


def smaps(pid):
    """{field: kB} of /proc/PID/smaps_rollup (empty once the process is gone)."""
    try:
        with open(f"/proc/{pid}/smaps_rollup") as file:
            fields = (line.split() for line in file if line.rstrip().endswith("kB"))
            return {parts[0].rstrip(":"): int(parts[1]) for parts in fields}
    except OSError:
        return {}


def ranks_of(marker):
    """PIDs of the Python processes whose command line holds `marker`."""
    pids = []
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                with open(f"/proc/{name}/cmdline", "rb") as file:
                    line = file.read()
            except OSError:
                continue
            if marker.encode() in line and b"numpy_dl.launch" in line and b"mpirun" not in line:
                pids.append(int(name))
    return pids


def train(spec, ranks, out, cgroup=None):
    """Run the job, sampling its ranks' memory; (seconds, max total PSS, max RSS) in MiB."""
    mpirun = os.path.join(os.path.dirname(sys.executable), "mpirun")
    command = [mpirun, "-n", str(ranks), sys.executable, "-m", "numpy_dl.launch", "train",
               "--dataset", spec, "--model", "ae", "--hidden-sizes", "64", "--latent-dim",
               "8", "--epochs", "1", "--global-batch-size", "4096", "--val-fraction", "0.01",
               "--out", out]
    env = {**os.environ, "PYTHONPATH": REPO, "OMP_NUM_THREADS": "1"}
    start = time.perf_counter()
    job = subprocess.Popen(command, env=env, cwd=REPO, stdout=subprocess.DEVNULL,
                           stderr=subprocess.PIPE, text=True,
                           preexec_fn=(lambda: join_cgroup(cgroup)) if cgroup else None)
    most_pss = most_rss = 0
    while job.poll() is None:
        readings = [smaps(pid) for pid in ranks_of(out)]
        most_pss = max(most_pss, sum(r.get("Pss", 0) for r in readings))
        most_rss = max([most_rss] + [r.get("Rss", 0) for r in readings])
        time.sleep(0.5)
    seconds = time.perf_counter() - start
    if job.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{job.stderr.read()}")
    return seconds, most_pss / 1024, most_rss / 1024


def join_cgroup(name):
    with open(os.path.join(CGROUP, name, "cgroup.procs"), "w") as file:
        file.write(str(os.getpid()))


def make_cgroup(limit_mib):
    name = f"numpy_dl_bench_{os.getpid()}"
    os.makedirs(os.path.join(CGROUP, name))
    with open(os.path.join(CGROUP, name, "memory.limit_in_bytes"), "w") as file:
        file.write(str(limit_mib << 20))
    return name


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ranks", type=int, default=8)
    parser.add_argument("--images", type=int, default=100_000)
    parser.add_argument("--limit-mib", type=int, default=0,
                        help="run the mapped job in a cgroup limited to this memory (0: none)")
    parser.add_argument("--only-mapped", action="store_true",
                        help="skip the in-memory .npz run (for files too large for it)")
    args = parser.parse_args()
    scratch = tempfile.mkdtemp(prefix="numpy_dl_shared_data_")
    cgroup = make_cgroup(args.limit_mib) if args.limit_mib else None
    try:
        npy = write_dataset(scratch, args.images)
        size = os.path.getsize(npy) / 2**20
        print(f"{args.ranks} ranks, {args.images:,} uint8 28x28 images: {size:.0f} MiB on disk, "
              f"{size * 4:.0f} MiB as float32 in memory"
              + (f"; the mapped run limited to {args.limit_mib} MiB" if cgroup else ""))
        print(f"{'dataset':26} {'seconds':>8} {'total PSS MiB':>14} {'max RSS MiB':>12}")
        runs = [("npz:images.npy (mapped)", "npz:" + npy, cgroup)]
        if not args.only_mapped:
            npz = os.path.join(scratch, "images.npz")
            np.savez(npz, images=np.load(npy, mmap_mode="r"))
            runs.append(("npz:images.npz (in memory)", "npz:" + npz, None))
        for number, (label, spec, group) in enumerate(runs):
            seconds, pss, rss = train(spec, args.ranks, os.path.join(scratch, f"run{number}"),
                                      group)
            print(f"{label:26} {seconds:8.1f} {pss:14.0f} {rss:12.0f}")
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
        if cgroup:
            os.rmdir(os.path.join(CGROUP, cgroup))


if __name__ == "__main__":
    main()
