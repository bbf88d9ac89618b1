#!/bin/sh
# The two roles of a container of the numpy_dl MPI cluster (docker-compose.yml):
#   entrypoint.sh worker             serve ssh, so the head's mpirun can start ranks here
#   entrypoint.sh head COMMAND...    wait until every host in $HYDRA_HOST_FILE accepts ssh,
#                                    then run COMMAND (mpirun -n N python -m numpy_dl.launch
#                                    train ...); MPICH's mpirun reads the hosts from
#                                    HYDRA_HOST_FILE and runs the head's own ranks locally
set -eu
role=${1:-worker}
[ $# -gt 0 ] && shift

case "$role" in
worker)
    exec /usr/sbin/sshd -D -e
    ;;
head)
    for host in $(cut -d: -f1 "$HYDRA_HOST_FILE" | grep -v '^#' | grep -v "^$(hostname)\$"); do
        tries=0
        until ssh -o ConnectTimeout=2 "$host" true 2>/dev/null; do
            tries=$((tries + 1))
            if [ "$tries" -ge 60 ]; then
                echo "head: worker $host did not accept ssh within 60 s" >&2
                exit 1
            fi
            sleep 1
        done
    done
    exec "$@"
    ;;
*)
    echo "entrypoint.sh: unknown role '$role'; expected worker or head COMMAND..." >&2
    exit 2
    ;;
esac
