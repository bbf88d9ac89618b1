"""The cluster recipes run the same command as a laptop: the compose head's mpirun,
the Slurm and PBS scripts (pbs.sh runs here under MPICH's mpirun; tests/test_slurm.py
submits slurm.sbatch to a real Slurm). Docker is not needed: docker-compose.yml is written in a plain
subset of YAML that a small reader here parses."""
import json
import os
import re
import sys

import pytest

from distributed_helpers import REPO, needs_mpirun, output_of, run

LAUNCH = os.path.join(REPO, "launch")
TRAIN = "python -m numpy_dl.launch train"


def read_simple_yaml(text):
    """Nested mappings by indentation, `- item` lists of scalars, JSON flow lists and
    quoted or bare scalars: the subset docker-compose.yml is written in."""
    root = {}
    stack = [(-1, root)]  # (indent, container); the container a deeper line goes into
    lines = [line for line in text.splitlines()
             if line.strip() and not line.lstrip().startswith("#")]
    for number, line in enumerate(lines):
        indent = len(line) - len(line.lstrip(" "))
        while indent <= stack[-1][0]:
            stack.pop()
        parent = stack[-1][1]
        content = line.strip()
        if content.startswith("- "):
            parent.append(scalar(content[2:]))
            continue
        key, _, value = content.partition(":")
        if value.strip():
            parent[key] = scalar(value.strip())
            continue
        following = lines[number + 1] if number + 1 < len(lines) else ""
        child = [] if following.strip().startswith("- ") else {}
        parent[key] = child
        stack.append((indent, child))
    return root


def scalar(text):
    if text.startswith(("[", '"')):
        return json.loads(text)
    return text


@pytest.fixture(scope="module")
def compose():
    with open(os.path.join(REPO, "docker-compose.yml")) as file:
        return read_simple_yaml(file.read())["services"]


def test_the_reader_reads_the_subset():
    parsed = read_simple_yaml('a:\n  b: x\n  c:\n    - "1"\n    - two\n  d: ["p", "q"]\ne: 3\n')
    assert parsed == {"a": {"b": "x", "c": ["1", "two"], "d": ["p", "q"]}, "e": "3"}


def test_every_service_is_built_from_the_dockerfile(compose):
    assert "head" in compose and any(name.startswith("worker") for name in compose)
    for service in compose.values():
        assert service["build"] == {"context": ".", "dockerfile": "launch/docker/Dockerfile"}
        assert service["image"] == compose["head"]["image"]
    with open(os.path.join(LAUNCH, "docker", "Dockerfile")) as file:
        dockerfile = file.read()
    entrypoint = json.loads(re.search(r"^ENTRYPOINT (\[.*\])$", dockerfile, re.M).group(1))[0]
    script = os.path.join(REPO, os.path.relpath(entrypoint, "/opt/numpy_dl"))
    assert os.access(script, os.X_OK), script


def test_the_head_runs_the_laptop_command_on_every_host_of_its_hostfile(compose):
    head = compose["head"]
    role, *command = head["command"]
    assert role == "head"
    match = re.fullmatch(r"mpirun -n (\d+) " + re.escape(TRAIN) + r"( .*)?", " ".join(command))
    assert match, command
    ranks = int(match.group(1))
    hostfile = head["environment"]["HYDRA_HOST_FILE"]
    assert hostfile.startswith("/opt/numpy_dl/")  # where the Dockerfile copies the repo
    with open(os.path.join(REPO, os.path.relpath(hostfile, "/opt/numpy_dl"))) as file:
        hosts = [line.split(":") for line in file.read().splitlines()
                 if line.strip() and not line.startswith("#")]
    assert sum(int(slots) for _, slots in hosts) == ranks
    assert [name for name, _ in hosts] == [s["hostname"] for s in compose.values()]
    assert hosts[0][0] == head["hostname"]  # rank 0 writes the mounted run directory
    assert sorted(head["depends_on"]) == sorted(n for n in compose if n != "head")
    assert all(compose[n]["command"] == ["worker"] for n in compose if n != "head")


@pytest.mark.parametrize("script, launcher", [
    ("slurm.sbatch", r"srun --mpi=\"\$SRUN_MPI\""),
    ("pbs.sh", r"mpirun -n \"\$RANKS\" \"\$\{HOSTS\[@\]\}\""),
])
def test_batch_scripts_run_the_same_train_command(script, launcher):
    with open(os.path.join(LAUNCH, script)) as file:
        text = file.read()
    assert text.startswith("#!/bin/bash\n")
    assert re.search(launcher + " " + re.escape(TRAIN), text), text


def test_the_recipes_are_documented():
    with open(os.path.join(LAUNCH, "README.md")) as file:
        readme = file.read()
    for needed in ("pip install --no-binary mpi4py mpi4py", "MPICC=", "docker compose up",
                   "HYDRA_HOST_FILE", "slurm.sbatch", "pbs.sh", "hostfile.example"):
        assert needed in readme, needed
    assert os.path.isfile(os.path.join(LAUNCH, "hostfile.example"))


@needs_mpirun
def test_the_pbs_script_runs_under_mpich_mpirun(tmp_path):
    """pbs.sh as PBS would run it: two slots of this host in $PBS_NODEFILE."""
    nodefile = tmp_path / "nodes"
    nodefile.write_text("localhost\nlocalhost\n")
    venv = os.path.dirname(os.path.dirname(sys.executable))
    result, _ = run(["bash", os.path.join(LAUNCH, "pbs.sh")], timeout=120,
                    PBS_NODEFILE=nodefile, PBS_O_WORKDIR=tmp_path, PBS_JOBNAME="pbs-test",
                    NUMPY_DL_VENV=venv, ARGS="--epochs 1 --hidden-sizes 32")
    assert result.returncode == 0, output_of(result)
    assert "2 ranks (2 per node)" in result.stdout
    assert (tmp_path / "runs" / "pbs-pbs-test" / "metrics.jsonl").exists()
