#!/bin/bash
# Train numpy_dl on a PBS Pro / Torque cluster with the cluster's own MPI:
#     qsub launch/pbs.sh
#     qsub -v ARGS="--dataset mnist:$HOME/data/mnist --epochs 20" launch/pbs.sh
# ARGS go to `python -m numpy_dl.launch train`. mpirun starts one rank per line of
# $PBS_NODEFILE (mpiprocs per chunk); mpi4py must be built against this same MPI (see
# launch/README.md). Adjust the resources and the lines that load Python and MPI.
#PBS -N numpy_dl
#PBS -l select=2:ncpus=8:mpiprocs=8
#PBS -l walltime=01:00:00
#PBS -j oe

set -euo pipefail
cd "${PBS_O_WORKDIR:-.}"

# module load python mpich                            # your site's modules
source "${NUMPY_DL_VENV:-$HOME/venvs/numpy_dl}/bin/activate"

# A rank that waits in a collective longer than this aborts the job instead of hanging.
export NUMPY_DL_STALL_TIMEOUT=${NUMPY_DL_STALL_TIMEOUT:-600}
RANKS=$(wc -l < "$PBS_NODEFILE")

# MPICH and Intel MPI take the hosts with -f, Open MPI with --hostfile: ask mpirun which
# it is. Each rank runs one BLAS thread (the launcher's default, --threads 1); with a
# node's cores to spare per rank, --threads 0 shares them (cores per node / ranks per node).
if mpirun --version 2>&1 | grep -q "Open MPI"; then
    HOSTS=(--hostfile "$PBS_NODEFILE")
else
    HOSTS=(-f "$PBS_NODEFILE")
fi
# --resume auto: a job resubmitted after a stop (exit 75: a signal made numpy_dl write a
# checkpoint and stop) goes on from that checkpoint; a new job starts the run.
# shellcheck disable=SC2086  # ARGS is split into options on purpose
mpirun -n "$RANKS" "${HOSTS[@]}" python -m numpy_dl.launch train \
    --out "runs/pbs-${PBS_JOBNAME:-numpy_dl}" --resume auto \
    ${ARGS:-}
