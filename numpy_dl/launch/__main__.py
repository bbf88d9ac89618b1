"""`python -m numpy_dl.launch COMMAND`: see cli.py."""
import sys

from .cli import main

sys.exit(main(prog="python -m numpy_dl.launch"))
