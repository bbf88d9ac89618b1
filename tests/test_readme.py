"""The README's promises: its Python examples run as written, and CI runs exactly the
Quick start's two commands."""
import os
import re

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def readme_blocks(language):
    text = open(os.path.join(ROOT, "README.md"), encoding="utf-8").read()
    return re.findall(rf"```{language}\n(.*?)```", text, flags=re.S)


def test_python_examples_run_as_written(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    namespace = {}
    blocks = readme_blocks("python")
    assert len(blocks) >= 2
    for block in blocks:
        exec(compile(block, "README.md", "exec"), namespace)
    assert namespace["samples"].shape == (10, 64)
    assert namespace["samples"].dtype == np.float32
    assert namespace["loss"].item() < 30  # a trained digits VAE; untrained it is about 44


def test_ci_runs_exactly_the_quick_start_commands():
    quick_start = readme_blocks("bash")[0].strip().splitlines()
    assert len(quick_start) == 2
    assert "mpirun -n 8 python -m numpy_dl.launch train" in quick_start[0]
    ci = open(os.path.join(ROOT, ".ci", "run"), encoding="utf-8").read().splitlines()
    assert ci[-2:] == quick_start
