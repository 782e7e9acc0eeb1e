#!/usr/bin/env bash
# Set up a real single-node Slurm on this host for the tier-4 tests (as root):
# installs slurm-wlm and munge from apt if missing, writes /etc/slurm/slurm.conf
# for this host (its short name, its CPU count and memory, partition "debug"),
# makes a munge key, starts munged, slurmctld and slurmd, and waits until
# sinfo shows the node idle.  Idempotent: running daemons with the same
# configuration are left alone.
#
#   scripts/ci/slurm.sh [start]   set up and start (the default)
#   scripts/ci/slurm.sh check     exit 0 if a node answers (sinfo), else 1
#   scripts/ci/slurm.sh stop      stop the daemons
set -euo pipefail
action=${1:-start}
conf=/etc/slurm/slurm.conf
state=/var/lib/slurm-ipkernel
say() { echo "slurm.sh: $*"; }

node_up() {
    timeout 10 sinfo -h -N -o "%N %t" 2>/dev/null | grep -Eq " (idle|mix|alloc)\*?$" &&
        ! timeout 10 sinfo -h -N -o "%t" 2>/dev/null | grep -q '\*'
}

# The daemons by their pid files (never by name: other slurmds may be someone else's).
PIDFILES="slurmd:/run/slurmd.pid slurmctld:/run/slurmctld.pid munged:/run/munge/munged.pid"
daemon_pid() {   # NAME: its pid if it runs, per its pid file
    local entry file pid
    for entry in $PIDFILES; do
        [ "${entry%%:*}" = "$1" ] || continue
        file=${entry#*:}
        pid=$(cat "$file" 2>/dev/null || true)
        [ -n "$pid" ] && [ "$(cat /proc/"$pid"/comm 2>/dev/null)" = "$1" ] && echo "$pid"
    done
    return 0
}

stop_one() {   # NAME
    local pid
    pid=$(daemon_pid "$1")
    [ -n "$pid" ] || return 0
    say "stopping $1 (pid $pid)"
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 100); do [ -d /proc/"$pid" ] || return 0; sleep 0.1; done
    say "$1 (pid $pid) still running after 10 s" >&2
    return 1
}

stop_daemons() {
    stop_one slurmd && stop_one slurmctld && stop_one munged
}

case $action in
    check) node_up; exit ;;
    stop) stop_daemons; exit ;;
    start) ;;
    *) echo "usage: $0 [start|check|stop]" >&2; exit 2 ;;
esac

[ "$(id -u)" = 0 ] || { say "must run as root (it writes /etc/slurm and starts daemons)" >&2; exit 1; }

if ! command -v slurmctld >/dev/null || ! command -v slurmd >/dev/null ||
        ! command -v munged >/dev/null || ! command -v sbatch >/dev/null; then
    say "installing slurm-wlm and munge from apt"
    timeout 600 apt-get update -qq
    DEBIAN_FRONTEND=noninteractive timeout 900 apt-get install -y -qq --no-install-recommends \
        slurm-wlm munge
fi

host=$(hostname -s)
if ! getent hosts "$host" >/dev/null; then
    say "adding $host to /etc/hosts (127.0.1.1) so slurmd can resolve itself"
    echo "127.0.1.1 $host" >> /etc/hosts
fi
cpus=$(nproc)
mem=$(awk '/^MemTotal:/ {print int($2 / 1024) - 512}' /proc/meminfo)
mkdir -p /etc/slurm "$state/ctld" "$state/d" /var/log/slurm /run/munge
new=$(cat <<CONF
# Written by ipkernel scripts/ci/slurm.sh: a single-node Slurm for the tests.
ClusterName=ipkernel
SlurmctldHost=$host
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SchedulerType=sched/backfill
ReturnToService=2
StateSaveLocation=$state/ctld
SlurmdSpoolDir=$state/d
SlurmctldPidFile=/run/slurmctld.pid
SlurmdPidFile=/run/slurmd.pid
SlurmctldLogFile=/var/log/slurm/slurmctld.log
SlurmdLogFile=/var/log/slurm/slurmd.log
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
MpiDefault=none
MinJobAge=300
KillWait=5
NodeName=$host CPUs=$cpus RealMemory=$mem State=UNKNOWN
PartitionName=debug Nodes=$host Default=YES MaxTime=INFINITE State=UP OverSubscribe=FORCE:4
CONF
)
changed=0
if [ ! -f "$conf" ] || [ "$(cat "$conf")" != "$new" ]; then
    say "writing $conf (node $host, $cpus CPUs, ${mem} MB, partition debug)"
    printf '%s\n' "$new" > "$conf"
    changed=1
fi

if [ ! -s /etc/munge/munge.key ]; then
    say "making a munge key"
    mkdir -p /etc/munge
    dd if=/dev/urandom of=/etc/munge/munge.key bs=1 count=1024 status=none
fi
chown -R munge:munge /etc/munge /run/munge /var/lib/munge /var/log/munge 2>/dev/null || true
chmod 0400 /etc/munge/munge.key
if [ -z "$(daemon_pid munged)" ]; then
    say "starting munged"
    runuser -u munge -- /usr/sbin/munged
fi
for _ in $(seq 50); do munge -n </dev/null | unmunge >/dev/null 2>&1 && break; sleep 0.2; done
munge -n </dev/null | unmunge >/dev/null || { say "munge does not work" >&2; exit 1; }

if [ $changed = 1 ] && [ -n "$(daemon_pid slurmctld)" ]; then
    say "configuration changed: restarting slurmctld and slurmd"
    stop_one slurmd; stop_one slurmctld
fi
if [ -z "$(daemon_pid slurmctld)" ]; then
    say "starting slurmctld"
    /usr/sbin/slurmctld
fi
for _ in $(seq 100); do timeout 5 scontrol ping >/dev/null 2>&1 && break; sleep 0.2; done
if [ -z "$(daemon_pid slurmd)" ]; then
    say "starting slurmd"
    /usr/sbin/slurmd
fi

for _ in $(seq 120); do
    if node_up; then
        say "node $host is up: $(sinfo -h -N -o '%N %P %t %c CPUs')"
        exit 0
    fi
    # A node left down by an earlier run comes back once it answers.
    scontrol update NodeName="$host" State=RESUME >/dev/null 2>&1 || true
    sleep 0.5
done
say "node $host did not become idle within 60 s: $(sinfo -N 2>&1 | tail -n +2)" >&2
say "see /var/log/slurm/slurmctld.log and slurmd.log" >&2
exit 1
