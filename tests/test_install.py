"""The package as a user gets it: a wheel built from this checkout and installed, not
editable, into a fresh venv runs from outside the repository as `numpy-dl` and as
`python -m numpy_dl`, with the built-in digits and the LICENSE inside it. An editable
install (the Quick start's) would hide a file missing from the wheel.

Nothing is downloaded: the wheel is built with this environment's setuptools (the test
extra), and the venv sees this environment's numpy and the other dependencies through a
.pth file naming its site-packages, in which the editable numpy_dl's own .pth is not read.
"""
import os
import shutil
import subprocess
import sys
import sysconfig
import venv
import zipfile

import pytest

import numpy_dl
from distributed_helpers import REPO, UNDER_MPI

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(UNDER_MPI, reason="builds and runs its own processes; the "
                                 "outer, single-process pytest runs it")]

# What pyproject.toml builds the package from; the build writes into a copy of them, not
# into the checkout.
SOURCES = ["pyproject.toml", "README.md", "LICENSE", "numpy_dl"]


def build_wheel(tmp_path):
    source = tmp_path / "source"
    source.mkdir()
    for name in SOURCES:
        path = os.path.join(REPO, name)
        if os.path.isdir(path):
            shutil.copytree(path, source / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy(path, source / name)
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-index",
                    "--no-build-isolation", "-w", str(tmp_path / "wheels"), str(source)],
                   check=True, timeout=120)
    (wheel,) = (tmp_path / "wheels").iterdir()
    return wheel


def fresh_venv(directory, wheel):
    """A venv holding the wheel, that imports its dependencies from this environment."""
    venv.create(directory, with_pip=False)
    python = str(directory / "bin" / "python")
    subprocess.run([sys.executable, "-m", "pip", "--python", python, "install", "-q",
                    "--no-deps", "--no-index", str(wheel)], check=True, timeout=120)
    site = subprocess.run([python, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
                          capture_output=True, text=True, check=True).stdout.strip()
    ours = {sysconfig.get_path("purelib"), sysconfig.get_path("platlib")}
    with open(os.path.join(site, "test_dependencies.pth"), "w") as file:
        file.write("".join(f"{path}\n" for path in sorted(ours)))
    return directory / "bin"


def test_the_installed_wheel_runs_as_numpy_dl_from_outside_the_repository(tmp_path):
    wheel = build_wheel(tmp_path)
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        entry_points = archive.read("numpy_dl-0.1.0.dist-info/entry_points.txt").decode()
    assert "numpy_dl/data/uci_digits_8x8.npz" in names
    assert "numpy_dl-0.1.0.dist-info/licenses/LICENSE" in names
    assert "numpy-dl = numpy_dl.launch.cli:script" in entry_points

    bin_dir = fresh_venv(tmp_path / "venv", wheel)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}

    def run(*command):
        return subprocess.run([str(c) for c in command], capture_output=True, text=True,
                              cwd=elsewhere, env=env, timeout=120)

    imported = run(bin_dir / "python", "-c", "import numpy_dl; print(numpy_dl.__file__)")
    assert imported.stdout.startswith(str(tmp_path / "venv")), imported.stdout + imported.stderr
    version = run(bin_dir / "numpy-dl", "--version")
    assert (version.returncode, version.stdout) == (0, f"numpy_dl {numpy_dl.__version__}\n")
    typo = run(bin_dir / "numpy-dl", "trian")
    assert typo.returncode == 2
    assert typo.stderr == ("numpy_dl: error: numpy-dl: unknown command 'trian'; "
                           "did you mean train?\n")
    for name, command in [("script", [bin_dir / "numpy-dl"]),
                          ("module", [bin_dir / "python", "-m", "numpy_dl"])]:
        trained = run(*command, "train", "--epochs", "1", "--out", tmp_path / name)
        assert trained.returncode == 0, trained.stdout + trained.stderr
        assert trained.stdout.startswith(f"numpy_dl {numpy_dl.__version__} train: 1 rank")
        metrics = (tmp_path / name / "metrics.jsonl").read_text().splitlines()
        assert len(metrics) == 1
