"""Run the launcher, `python -m numpy_dl.launch ARGV`, with rank 1 warning once during
training, as a library call on one rank may: the warning must reach that rank's log file,
RUN/logs/rank-1.log, as well as stderr.

    mpirun -n 2 python warn_on_rank.py train --out RUN ...
"""
import sys
import warnings

from numpy_dl.launch.cli import main
from numpy_dl.launch.train import Training

validate = Training.validate


def warning_on_rank_1(self):
    if self.comm.rank == 1:
        warnings.warn("rank 1 saw something odd")
    return validate(self)


Training.validate = warning_on_rank_1
sys.exit(main(sys.argv[1:]))
