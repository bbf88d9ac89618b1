"""The command line, `python -m numpy_dl.launch COMMAND`: train an autoencoder
data-parallel over MPI (or in one process), and sample, reconstruct, interpolate, encode
and score with the result; `info` reports the MPI and BLAS setup.

The launcher is the only part of numpy_dl that parses command lines or prints. Modules:
cli (argparse and dispatch), config (the training options, TOML in and out), train (the
training loop), commands (the commands that read a checkpoint), info, evaluate (work
shared over the ranks without double counting), modeling (one interface over the five
models), inputs (datasets and splits), rundir (the run directory), images (PNGs),
progress (bar or log lines), console (who prints what), errors (one-line failures and
exit codes). Process settings (BLAS threads, the
allocator) are numpy_dl.runtime's.
"""
