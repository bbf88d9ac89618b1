"""Train under mpirun; rank 2 raises in the middle of step 3 while the others wait in the
step's all-reduce. The job must abort with rank 2's traceback.

    mpirun -n 4 python raise_on_rank.py
"""
from training import start, train_step

from numpy_dl import distributed

comm = distributed.init()
model, optimizer = start(comm)
for step in range(100):
    if step == 3 and comm.rank == 2:
        raise ValueError("rank 2 failed on purpose at step 3")
    train_step(model, optimizer, comm, step)
print("not reached: the job should have been aborted")
