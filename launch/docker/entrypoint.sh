#!/bin/sh
# The two roles of a container of the numpy_dl MPI cluster (docker-compose.yml):
#   entrypoint.sh worker             serve ssh, so the head's mpirun can start ranks here
#   entrypoint.sh head COMMAND...    wait until every host in $HYDRA_HOST_FILE accepts ssh,
#                                    then run COMMAND (mpirun -n N python -m numpy_dl.launch
#                                    train ...); MPICH's mpirun reads the hosts from
#                                    HYDRA_HOST_FILE and runs the head's own ranks locally
#
# The head runs COMMAND as HOST_UID:HOST_GID (docker-compose.yml passes the user who
# started it; unset or 0 is root), so that the run directory rank 0 writes into the
# mounted ./runs belongs to that user rather than to root. The containers themselves stay
# root, which sshd needs; the workers' ranks run as root and write nothing.
set -eu
role=${1:-worker}
[ $# -gt 0 ] && shift
HOST_UID=${HOST_UID:-0}
HOST_GID=${HOST_GID:-$HOST_UID}

# Run "$@" as HOST_UID:HOST_GID. ssh, which mpirun starts to reach the workers, needs the
# uid to have a passwd entry and a key in its home (it logs in as root: the image's
# /etc/ssh/ssh_config.d/numpy_dl.conf). A ./runs that Docker created for the mount
# belongs to root; it is given to the user before the training writes into it.
run_as_host_user() {
    getent group "$HOST_GID" > /dev/null || groupadd -g "$HOST_GID" numpy_dl
    getent passwd "$HOST_UID" > /dev/null \
        || useradd -u "$HOST_UID" -g "$HOST_GID" -d /home/numpy_dl numpy_dl
    home=$(getent passwd "$HOST_UID" | cut -d: -f6)
    install -d -o "$HOST_UID" -g "$HOST_GID" -m 700 "$home" "$home/.ssh"
    install -o "$HOST_UID" -g "$HOST_GID" -m 600 /root/.ssh/id_ed25519 "$home/.ssh/id_ed25519"
    if [ -d runs ] && [ "$(stat -c %u runs)" = 0 ]; then
        chown "$HOST_UID:$HOST_GID" runs
    fi
    exec setpriv --reuid="$HOST_UID" --regid="$HOST_GID" --clear-groups \
        env HOME="$home" "$@"
}

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
    if [ "$HOST_UID" = 0 ]; then
        exec "$@"
    fi
    run_as_host_user "$@"
    ;;
*)
    echo "entrypoint.sh: unknown role '$role'; expected worker or head COMMAND..." >&2
    exit 2
    ;;
esac
