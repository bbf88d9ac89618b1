"""The README's promise that CI runs exactly the Quick start's two commands (its other
code blocks run in tests/test_doc_blocks.py)."""
import os
import re

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def readme_blocks(language):
    text = open(os.path.join(ROOT, "README.md"), encoding="utf-8").read()
    return re.findall(rf"```{language}\n(.*?)```", text, flags=re.S)


def test_ci_runs_exactly_the_quick_start_commands():
    quick_start = readme_blocks("bash")[0].strip().splitlines()
    assert len(quick_start) == 2
    assert "mpirun -n 8 python -m numpy_dl.launch train" in quick_start[0]
    ci = open(os.path.join(ROOT, ".ci", "run"), encoding="utf-8").read().splitlines()
    assert ci[-2:] == quick_start
