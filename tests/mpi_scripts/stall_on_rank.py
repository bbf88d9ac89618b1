"""Train under mpirun; at step 3 rank 1 sleeps instead of stepping, so the others wait in
the step's all-reduce until the stall watchdog (NUMPY_DL_STALL_TIMEOUT) aborts the job.

    NUMPY_DL_STALL_TIMEOUT=2 mpirun -n 4 python stall_on_rank.py
"""
import time

from training import start, train_step

from numpy_dl import distributed

comm = distributed.init()
model, optimizer = start(comm)
for step in range(100):
    if step == 3 and comm.rank == 1:
        time.sleep(600)
    train_step(model, optimizer, comm, step)
print("not reached: the job should have been aborted")
