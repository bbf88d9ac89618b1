"""The command line, `python -m numpy_dl.launch COMMAND`: train an autoencoder
data-parallel over MPI (or in one process), and sample, reconstruct, interpolate, encode,
score and evaluate with the result; `info` reports the MPI and BLAS setup. From Python,
`numpy_dl.launch.train(**options)` runs `train` (api.py).

The launcher is the only part of numpy_dl that parses command lines or prints. Modules:
cli (argparse and dispatch), config (the training options, TOML in and out), train (the
training loop), commands (the commands that read a checkpoint), info, evaluate (work
shared over the ranks without double counting), modeling (one interface over the five
models), inputs (datasets and splits), rundir (the run directory), images (image
grids as PNG), plots (loss.png), loggers (metrics.csv, TensorBoard),
progress (bar or log lines), console (who prints what), errors (one-line failures and
exit codes), api (`train` as a function). Process settings (BLAS threads, the
allocator) are numpy_dl.runtime's.
"""
# The function: it shadows the module train.py as an attribute of this package, so import
# from that module by its full name (`from numpy_dl.launch.train import Training`).
from .api import TrainResult, train

__all__ = ["train", "TrainResult"]
