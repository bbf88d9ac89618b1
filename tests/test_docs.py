"""The documentation site builds with warnings as errors, its API reference has an entry
for every public name, and its command-line page is generated from the real parser."""
import argparse
import importlib
import os
import subprocess
import sys
import zlib

import pytest

from numpy_dl.launch.cli import build_parser

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PUBLIC_MODULES = ["numpy_dl", "numpy_dl.nn", "numpy_dl.models", "numpy_dl.loss",
                  "numpy_dl.optim", "numpy_dl.data", "numpy_dl.distributed"]


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """The HTML site, built once for the module as a user builds it (docs/conf.py says how)."""
    pytest.importorskip("sphinx", reason="the docs extra installs Sphinx: pip install -e '.[docs]'")
    out = tmp_path_factory.mktemp("docs") / "html"
    result = subprocess.run([sys.executable, "-m", "sphinx", "-W", "--keep-going", "-b", "html",
                             "docs", str(out)], cwd=ROOT, capture_output=True, text=True,
                            timeout=600)
    assert result.returncode == 0, f"the docs build failed:\n{result.stdout}\n{result.stderr}"
    return out


def public_names(module):
    """The module's `__all__`, or else its names that do not start with an underscore."""
    names = getattr(module, "__all__", None)
    return list(names) if names is not None else [n for n in vars(module) if not n.startswith("_")]


def inventory_names(path):
    """Every object name in a Sphinx objects.inv (version 2: four header lines, then
    zlib-compressed lines of `name domain:role priority uri display-name`)."""
    with open(path, "rb") as stream:
        header = [stream.readline() for _ in range(4)]
        assert header[0].startswith(b"# Sphinx inventory version 2"), header[0]
        lines = zlib.decompress(stream.read()).decode("utf-8").splitlines()
    return {line.split(" ", 1)[0] for line in lines if line.strip()}


def test_the_site_builds_without_warnings(site):
    assert (site / "index.html").exists()
    assert (site / "cli.html").exists()


def test_every_public_name_has_an_api_entry(site):
    documented = inventory_names(site / "objects.inv")
    missing = [f"{name}.{public}" for name in PUBLIC_MODULES
               for public in public_names(importlib.import_module(name))
               if f"{name}.{public}" not in documented]
    assert not missing, f"public names without an entry in the API reference: {missing}"


def test_the_cli_page_lists_every_option_of_every_command(site):
    page = (site / "cli.html").read_text(encoding="utf-8")
    commands = build_parser().commands  # name -> its parser
    starts = {name: page.index(f'<section id="numpy-dl-{name}"') for name in commands}
    missing = []
    for name, parser in commands.items():
        end = min([start for start in starts.values() if start > starts[name]] + [len(page)])
        section = page[starts[name]:end]  # this command's part of the page
        for action in parser._actions:
            if isinstance(action, argparse._HelpAction):
                continue  # every command has -h; sphinx-argparse leaves it out of the lists
            missing += [f"{name} {flag}" for flag in action.option_strings
                        if f"<kbd>{flag}</kbd>" not in section]
    assert not missing, f"options missing from the generated CLI page: {missing}"
