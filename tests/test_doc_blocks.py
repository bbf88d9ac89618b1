"""Every code block of the README and of the documentation pages runs here, so that no
page can show code that does not work.

A page's blocks run in order, in a fresh empty directory, the way a reader would type
them one after the other:

- ```python blocks share one namespace per page and run in this process;
- ```bash blocks run under `bash -e` with this Python's bin folder first on PATH (its
  `numpy-dl`, `mpirun`), as written except that `--epochs N` runs as `--epochs 1`: what is
  checked is that each command works, not how well a long run trains;
- ```toml blocks are train config files: they are written out and read as `train --config`;
- ```text blocks are output or prose, shown and not run.

Any other fence language fails the test, so that nothing untested can slip onto a page.
The API reference shows the docstrings: their `.. code-block:: python` examples run here
too, each in a fresh namespace holding what such a fragment assumes (a small model, its
optimizer, a batch, a run directory: `fragment_namespace`).
Two kinds of block are run elsewhere: the README's Quick start, which CI runs as its own
last two lines (tests/test_readme.py checks they are the same), and the example scripts'
commands on the examples page, each run by its tests/test_example_NAME.py.
"""
import ast
import glob
import os
import re
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import numpy_dl as ndl
from numpy_dl import distributed
from numpy_dl.data import DataLoader, DistributedSampler, TensorDataset
from numpy_dl.distributed import checkpoint
from numpy_dl.launch import config
from numpy_dl.loss import MSELoss
from numpy_dl.models import Autoencoder
from numpy_dl.nn.utils import clip_grad_norm_
from numpy_dl.optim import Adam

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXAMPLES_PAGE = "examples/autoencoders/README.md"
PAGES = (["README.md", EXAMPLES_PAGE]
         + sorted(os.path.relpath(path, ROOT) for path in glob.glob(os.path.join(ROOT, "docs", "*.md"))))
LANGUAGES = {"python", "bash", "toml", "text"}
FENCE = re.compile(r"^(\s*)(`{3,})([^`\s]*)(?:\s+[^`]*)?$")


def fenced_blocks(page):
    """(language, code, line number) of each fenced block of a Markdown page; MyST
    directives ({toctree}, {literalinclude}, ...) are not code and are left out."""
    blocks, lines = [], open(os.path.join(ROOT, page), encoding="utf-8").read().splitlines()
    number = 0
    while number < len(lines):
        opening = FENCE.match(lines[number])
        number += 1
        if not opening:
            continue
        indent, ticks, language = opening.groups()
        start, body = number, []
        while number < len(lines) and lines[number].strip() != ticks:
            body.append(lines[number][len(indent):])
            number += 1
        number += 1
        if not language.startswith("{"):
            blocks.append((language, "\n".join(body) + "\n", start))
    return blocks


def one_epoch(command):
    return re.sub(r"--epochs[ =]\d+", "--epochs 1", command)


def run_bash(code, page, line):
    env = dict(os.environ, PATH=os.path.dirname(sys.executable) + os.pathsep + os.environ["PATH"])
    done = subprocess.run(["bash", "-e", "-c", one_epoch(code)], env=env, capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, (f"{page}:{line}: the bash block exited {done.returncode}\n"
                                  f"{code}\n--- stdout\n{done.stdout}\n--- stderr\n{done.stderr}")


def check_toml(code, page, line):
    path = f"block-{line}.toml"
    with open(path, "w", encoding="utf-8") as file:
        file.write(code)
    config.resolve((f"{page}:{line}", config.read_toml(path)))


def quick_start(page, blocks):
    """The README's first bash block, which CI runs itself."""
    return [blocks[[language for language, _, _ in blocks].index("bash")]] if page == "README.md" else []


@pytest.mark.parametrize("page", [page for page in PAGES if page != EXAMPLES_PAGE])
def test_every_block_of_the_page_runs(page, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    blocks = fenced_blocks(page)
    skipped = quick_start(page, blocks)
    namespace = {"__name__": "__doc_page__"}
    for language, code, line in blocks:
        assert language in LANGUAGES, f"{page}:{line}: a ```{language} block; expected one of {sorted(LANGUAGES)}"
        if (language, code, line) in skipped:
            continue
        if language == "python":
            exec(compile(code, f"{page}:{line}", "exec"), namespace)
        elif language == "bash":
            run_bash(code, page, line)
        elif language == "toml":
            check_toml(code, page, line)
    if page == "README.md":
        assert namespace["samples"].shape == (10, 64)
        assert namespace["samples"].dtype == np.float32
        assert namespace["loss"].item() < 30  # a trained digits VAE; untrained it is about 44


def test_the_examples_page_shows_only_commands_of_tested_scripts():
    commands = [code for language, code, _ in fenced_blocks(EXAMPLES_PAGE) if language == "bash"]
    assert commands, f"{EXAMPLES_PAGE} shows no command"
    for code in commands:
        for command in code.strip().splitlines():
            match = re.fullmatch(r"(?:mpirun -n \d+ )?python examples/autoencoders/(\w+)\.py( --[\w-]+ \S+)*",
                                 command.strip())
            assert match, f"{EXAMPLES_PAGE}: {command!r} is not the command of an example script"
            assert os.path.exists(os.path.join(ROOT, "tests", f"test_example_{match.group(1)}.py")), \
                f"{EXAMPLES_PAGE}: {match.group(1)}.py has no tests/test_example_{match.group(1)}.py"
    languages = {language for language, _, _ in fenced_blocks(EXAMPLES_PAGE)}
    assert languages <= LANGUAGES - {"python", "toml"}


def docstring_examples():
    """(file:line, [code of each `.. code-block:: python` block]) of every docstring in
    numpy_dl that has one."""
    found = []
    for path in sorted(glob.glob(os.path.join(ROOT, "numpy_dl", "**", "*.py"), recursive=True)):
        tree = ast.parse(open(path, encoding="utf-8").read())
        for node in ast.walk(tree):
            if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef)):
                text = ast.get_docstring(node, clean=True) or ""
                blocks = re.findall(r"^\.\. code-block:: python\n\n((?:    .*\n|\n)+)", text + "\n",
                                    flags=re.M)
                if blocks:
                    where = f"{os.path.relpath(path, ROOT)}:{getattr(node, 'lineno', 1)}"
                    found.append((where, [textwrap.dedent(block) for block in blocks]))
    return found


def fragment_namespace(run_dir):
    """What the docstrings' fragments take as given: a world communicator, a small model
    (one a checkpoint can rebuild) with its loss and a DistributedOptimizer, a global batch
    and this rank's batches."""
    ndl.manual_seed(0)
    comm = distributed.init()
    model = Autoencoder(4, [3], 2)
    x_global = np.random.default_rng(0).random((16, 4), dtype=np.float32)
    dataset = TensorDataset(x_global)
    criterion = MSELoss()
    optimizer = distributed.DistributedOptimizer(Adam(model.parameters()), comm=comm)
    return {"np": np, "ndl": ndl, "distributed": distributed, "checkpoint": checkpoint,
            "Adam": Adam, "DistributedOptimizer": distributed.DistributedOptimizer,
            "clip_grad_norm_": clip_grad_norm_, "comm": comm, "model": model,
            "criterion": criterion, "optimizer": optimizer, "opt": optimizer,
            "loss": criterion(model(x_global), x_global), "x_global": x_global,
            "loader": DataLoader(dataset, batch_size=4, sampler=DistributedSampler(dataset)),
            "my_batches": [x_global[:8], x_global[8:]], "run_dir": str(run_dir), "e": 0,
            "cfg": {"options": {}}, "scheduler": None}


@pytest.mark.parametrize("where, blocks", docstring_examples(), ids=lambda value: str(value)[:40])
def test_every_docstring_example_runs(where, blocks, tmp_path):
    for number, block in enumerate(blocks):
        exec(compile(block, where, "exec"), fragment_namespace(tmp_path / str(number)))


def test_docstrings_show_code_only_in_python_code_blocks():
    """A `::` literal block is for layouts and tables; code goes in a `.. code-block::
    python` block, which runs above, so a block of code that compiles is flagged."""
    for path in glob.glob(os.path.join(ROOT, "numpy_dl", "**", "*.py"), recursive=True):
        tree = ast.parse(open(path, encoding="utf-8").read())
        for node in ast.walk(tree):
            if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef)):
                text = ast.get_docstring(node, clean=True) or ""
                for block in re.findall(r"::\n\n((?:    .*\n|\n)+)", text + "\n"):
                    try:
                        compile(textwrap.dedent(block), path, "exec")
                    except SyntaxError:
                        continue
                    raise AssertionError(f"{path}: a literal block that is Python code; make it a "
                                         f"`.. code-block:: python` block:\n{block}")
