"""`python -m numpy_dl COMMAND`: the launcher's command line, as `numpy-dl` (see
numpy_dl/launch/cli.py)."""
import sys

from .launch.cli import main

sys.exit(main(prog="python -m numpy_dl"))
