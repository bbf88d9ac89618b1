"""Train, save and resume at any world size; rank 0 writes the final parameters.

    mpirun -n 4 python resume_across_sizes.py train DIRECTORY STEPS
    mpirun -n 2 python resume_across_sizes.py resume DIRECTORY STEPS OUT.npz
                python resume_across_sizes.py straight - STEPS OUT.npz
"""
import sys

import numpy as np
from training import start, train_step

from numpy_dl import distributed
from numpy_dl.distributed import checkpoint

mode, directory, steps = sys.argv[1], sys.argv[2], int(sys.argv[3])
comm = distributed.init()
model, optimizer = start(comm, seed=10 if mode == "resume" else 0)
first_step = 0
if mode == "resume":
    loaded = checkpoint.load(checkpoint.latest(directory, comm), comm)
    checkpoint.restore(loaded, model, optimizer, comm=comm)
    first_step = loaded.step
for step in range(first_step, first_step + steps):
    train_step(model, optimizer, comm, step)
if mode == "train":
    checkpoint.save(directory, model, optimizer, step=first_step + steps, comm=comm)
elif comm.is_main:
    np.savez(sys.argv[4], **model.state_dict())
