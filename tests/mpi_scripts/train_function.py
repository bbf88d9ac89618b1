"""Calls numpy_dl.launch.train on every rank: a run of 1 epoch, the same run resumed to 2,
and options that do not fit. Rank 0 prints, as the last line, a JSON list of what each
rank got: [final metrics, run directory, (error type, message, exit code)]."""
import json
import sys

import numpy_dl.launch
from numpy_dl import distributed

out = sys.argv[1]
small = dict(hidden_sizes=[32], latent_dim=4, val_fraction=0.9, noise_std=0.1)
numpy_dl.launch.train(**small, epochs=1, out=out)
result = numpy_dl.launch.train(out=out, resume="auto", epochs=2)
try:
    numpy_dl.launch.train(**small, epochs=1, global_batch_size=33, out=out + "-refused")
    refused = None
except ValueError as error:
    refused = [type(error).__name__, str(error), error.exit_code]
comm = distributed.init()
every = comm.gather_object([result.metrics, result.run_dir, refused])
if comm.is_main:
    print(json.dumps(every))
