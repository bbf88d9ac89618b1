#!/usr/bin/env bash
# Start a real single-node Slurm (Debian's slurm-wlm and munge) on this machine, for
# tests/test_slurm.py: one node with this machine's CPUs, one partition, requeue allowed.
# Installs the packages when missing (needs root and apt). Idempotent: a controller that
# already answers is left as it is. Prints one line saying what it did; exits non-zero,
# and the Slurm test then skips saying why, when Slurm cannot be had here.
set -euo pipefail

STATE=/tmp/numpy_dl_slurm
if command -v scontrol > /dev/null && scontrol ping 2> /dev/null | grep -q "is UP"; then
    echo "slurm: a controller already answers"
    exit 0
fi
if ! command -v slurmctld > /dev/null || ! command -v munged > /dev/null; then
    if [ "$(id -u)" != 0 ] || ! command -v apt-get > /dev/null; then
        echo "slurm: not installed, and installing needs root and apt-get" >&2
        exit 1
    fi
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq > /dev/null && apt-get install -y -qq slurm-wlm munge > /dev/null
fi

mkdir -p "$STATE"/{spool,state,log} /etc/slurm /run/munge
chown munge:munge /run/munge
if [ ! -s /etc/munge/munge.key ]; then
    dd if=/dev/urandom of=/etc/munge/munge.key bs=1024 count=1 status=none
fi
chown munge:munge /etc/munge/munge.key && chmod 400 /etc/munge/munge.key
pgrep -x munged > /dev/null || runuser -u munge -- /usr/sbin/munged

NODE=$(hostname -s)
CPUS=$(nproc)
MEMORY=$(( $(awk '/MemTotal/ {print $2}' /proc/meminfo) / 1024 - 512 ))
cat > /etc/slurm/slurm.conf <<CONF
ClusterName=numpy_dl_test
SlurmctldHost=$NODE
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
StateSaveLocation=$STATE/state
SlurmdSpoolDir=$STATE/spool
SlurmctldPidFile=$STATE/slurmctld.pid
SlurmdPidFile=$STATE/slurmd.pid
SlurmctldLogFile=$STATE/log/slurmctld.log
SlurmdLogFile=$STATE/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/affinity
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
MpiDefault=none
ReturnToService=2
JobRequeue=1
SchedulerType=sched/backfill
NodeName=$NODE CPUs=$CPUS RealMemory=$MEMORY State=UNKNOWN
PartitionName=debug Nodes=$NODE Default=YES MaxTime=INFINITE State=UP OverSubscribe=NO
CONF
pgrep -x slurmctld > /dev/null || /usr/sbin/slurmctld
pgrep -x slurmd > /dev/null || /usr/sbin/slurmd
for _ in $(seq 60); do
    if sinfo -h -o %T 2> /dev/null | grep -qE "^(idle|mixed|allocated)"; then
        echo "slurm: started one node ($NODE, $CPUS CPUs), partition debug; logs in $STATE/log"
        exit 0
    fi
    sleep 1
done
echo "slurm: the node did not become idle; see $STATE/log" >&2
exit 1
