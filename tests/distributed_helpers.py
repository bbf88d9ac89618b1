"""Shared by the distributed tests: a small model and its data, cross-rank comparisons,
gradients known on every rank with what each `op` must make of them, and running scripts
under mpirun.

The collective tests hold at any world size: under `mpirun -n N python -m pytest
--with-mpi` every rank runs them, and plain pytest runs them on a world of one. A test
does all of its collectives before it asserts anything, so a failing rank cannot leave
the others waiting in the next test.
"""
import functools
import hashlib
import importlib.util
import os
import shutil
import subprocess
import sys
import time

import numpy as np
import pytest

import numpy_dl as ndl
from numpy_dl import distributed, runtime, nn

WORLD = distributed.init()
UNDER_MPI = runtime.started_by_mpi()
REPO = os.path.dirname(os.path.dirname(os.path.abspath(ndl.__file__)))
SCRIPTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "mpi_scripts")

IN_FEATURES, OUT_FEATURES = 6, 3


def small_model(seed, dropout=0.0, batch_norm=False):
    """A two-layer MLP, initialised from `seed`."""
    ndl.manual_seed(seed)
    layers = [nn.Linear(IN_FEATURES, 16)]
    layers += [nn.BatchNorm1d(16)] if batch_norm else []
    layers += [nn.Tanh()] + ([nn.Dropout(dropout)] if dropout else []) + [nn.Linear(16, OUT_FEATURES)]
    return nn.Sequential(*layers)


def global_batch(index, size):
    """Batch number `index` of `size` samples, the same on every rank."""
    rng = np.random.default_rng([7, index])
    x = rng.normal(size=(size, IN_FEATURES)).astype(np.float32)
    y = np.tanh(x[:, :OUT_FEATURES] * 2 - x[:, OUT_FEATURES:])
    return x, y.astype(np.float32)


def local_part(array, comm):
    """This rank's equal share of a global batch."""
    per_rank = len(array) // comm.size
    return array[comm.rank * per_rank:(comm.rank + 1) * per_rank]


def mse(model, x, y):
    return ((model(ndl.tensor(x)) - ndl.tensor(y)) ** 2).mean()


def digest(arrays):
    """sha256 over a dict of arrays (or a state_dict): equal digests, equal bytes."""
    sha = hashlib.sha256()
    for name in sorted(arrays):
        array = np.asarray(arrays[name], order="C")
        sha.update(f"{name}{array.dtype.str}{array.shape}".encode())
        sha.update(array)
    return sha.hexdigest()


def on_every_rank(comm, value):
    """The list of every rank's `value`, on every rank."""
    return comm.bcast_object(comm.gather_object(value))


def shared_directory(tmp_path, comm):
    """Rank 0's tmp_path on every rank (checkpoints are written by rank 0)."""
    return comm.bcast_object(str(tmp_path))


# ---------------------------------------------------------------------------- known gradients
PROBE_SHAPES = {"a": (3,), "b": (2, 4), "c": (5,)}
needs_power_of_two_world = pytest.mark.skipif(
    WORLD.size & (WORLD.size - 1) != 0, reason="Adasum needs a power-of-two number of ranks")


class Probe(nn.Module):
    """Parameters of the shapes PROBE_SHAPES, all zeros, whose gradients a test chooses."""

    def __init__(self):
        super().__init__()
        for name, shape in PROBE_SHAPES.items():
            setattr(self, name, nn.Parameter(np.zeros(shape, dtype=np.float32)))


def known_gradient(rank, number):
    """The gradient of backward pass `number` on rank `rank`, from a seed, so every rank
    knows every rank's: a float32 array per parameter, except None (no gradient) for
    "c" on odd ranks."""
    rng = np.random.default_rng([11, rank, number])
    return {name: None if name == "c" and rank % 2 else
            rng.normal(size=shape).astype(np.float32) for name, shape in PROBE_SHAPES.items()}


def backward_known(probe, gradient):
    """A backward pass that adds `gradient` (known_gradient's) to the probe's `.grad`."""
    for name, value in gradient.items():
        if value is not None:
            (getattr(probe, name) * ndl.tensor(value)).sum().backward()


def adasum_reference(vectors):
    """Adasum of a power-of-two number of float64 arrays: neighbours first, then pairs of
    those, up the binary tree."""
    while len(vectors) > 1:
        pairs = []
        for a, b in zip(vectors[::2], vectors[1::2]):
            dot, aa, bb = np.vdot(a, b), np.vdot(a, a), np.vdot(b, b)
            pairs.append(b if aa == 0 else a if bb == 0 else
                         (1 - dot / (2 * aa)) * a + (1 - dot / (2 * bb)) * b)
        vectors = pairs
    return vectors[0]


def combined_reference(op, gradients, passes):
    """What DistributedOptimizer(op=op, backward_passes_per_step=passes) must make of
    `gradients[r]`, the list of rank r's known gradients in an update, in float64."""
    count = sum(len(each) for each in gradients)
    combined = {}
    for name, shape in PROBE_SHAPES.items():
        per_rank = [sum((g[name].astype(np.float64) for g in each if g[name] is not None),
                        np.zeros(shape)) for each in gradients]
        if op == distributed.Average:
            combined[name] = sum(per_rank) / count
        elif op == distributed.Sum:
            combined[name] = sum(per_rank) / passes
        else:
            combined[name] = adasum_reference(per_rank) / passes
    return combined


# ---------------------------------------------------------------------------- subprocesses
def find_mpirun():
    beside_python = os.path.join(os.path.dirname(sys.executable), "mpirun")
    return beside_python if os.access(beside_python, os.X_OK) else shutil.which("mpirun")


def mpirun_command(ranks):
    """`mpirun -n ranks` with the flags this MPI needs here, for every test that launches
    a job: Open MPI refuses more ranks than cores without --oversubscribe and refuses to
    run as root without --allow-run-as-root; MPICH and Intel MPI need neither."""
    return [find_mpirun(), *_launcher_flags(), "-n", str(ranks)]


@functools.cache
def _launcher_flags():
    version = subprocess.run([find_mpirun(), "--version"], capture_output=True, text=True,
                             timeout=60)
    if "Open MPI" not in version.stdout + version.stderr:
        return ()
    return ("--oversubscribe",) + (("--allow-run-as-root",) if os.geteuid() == 0 else ())


def error_lines(stderr):
    """numpy_dl's own error lines in a job's stderr. An MPI launcher may add lines of its
    own after a rank exits with an error (Open MPI prints a block); those are not ours."""
    return [line for line in stderr.splitlines() if line.startswith("numpy_dl:")]


def mpi_skip_reason():
    """Why tests that launch mpirun cannot run here, or None."""
    if UNDER_MPI:
        return "launches mpirun itself; runs in the outer, single-process pytest"
    if find_mpirun() is None:
        return "mpirun not found next to the Python executable or on PATH"
    if importlib.util.find_spec("mpi4py") is None:
        return "mpi4py is not installed"
    return None


needs_mpirun = pytest.mark.skipif(mpi_skip_reason() is not None,
                                  reason=str(mpi_skip_reason()))
not_under_mpi = pytest.mark.skipif(UNDER_MPI, reason="runs a subprocess; the outer, "
                                                     "single-process pytest runs it once")


def subprocess_env(**overrides):
    """The environment of a child job: numpy_dl importable, one BLAS thread per rank."""
    env = dict(os.environ)
    env.pop("NUMPY_DL_NO_MPI", None)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [REPO, env.get("PYTHONPATH")]))
    for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        env[name] = "1"
    env.update({key: str(value) for key, value in overrides.items()})
    return env


def run(command, timeout, **env):
    """Run `command` and return (CompletedProcess, seconds); a hang fails the test."""
    start = time.monotonic()
    try:
        result = subprocess.run(command, capture_output=True, text=True, timeout=timeout,
                                env=subprocess_env(**env), cwd=REPO)
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"{' '.join(command)} did not finish within {timeout} s\n"
                    f"stdout:\n{exc.stdout}\nstderr:\n{exc.stderr}")
    return result, time.monotonic() - start


def run_script(name, *args, ranks=None, timeout=120, **env):
    """Run tests/mpi_scripts/`name` with `args`, under `mpirun -n ranks` or alone."""
    command = [sys.executable, os.path.join(SCRIPTS, name), *map(str, args)]
    if ranks is not None:
        command = [*mpirun_command(ranks), *command]
    return run(command, timeout, **env)


def output_of(result):
    return f"exit code {result.returncode}\nstdout:\n{result.stdout}\nstderr:\n{result.stderr}"
