#!/usr/bin/env bash
# Set up a real single-host Grid Engine for the tier-4 SGE tests (as root):
# Debian's gridengine-master/-exec/-client, a qmaster and an execd on this
# host, and a queue (all.q) on it with one slot per CPU (SGE_SLOTS=N for
# another count: a controller job and N engines need N+1), where root may run
# jobs.  What this machine needed:
#   - this host's name first on 127.0.0.1 in /etc/hosts (qmaster and execd
#     resolve 127.0.0.1 back to a name and must find their own);
#   - act_qmaster holding that name;
#   - min_uid 0 and min_gid 0 in the global configuration (root's jobs);
#   - an execution host and a queue added by hand (the packages add none),
#     without load thresholds (a busy 2-core machine would put it in alarm);
#   - debconf answers preset, so the packages install without questions.
# The scheduler runs every 2 s, so that test jobs start quickly.
#
# Idempotent: what is already so is left alone (a second run only checks);
# every change is printed.  Ends with a check: a job submitted with qsub runs
# as root and its output comes back.
#
#   scripts/ci/sge.sh [start]   set up (the default) and check
#   scripts/ci/sge.sh check     only check (exit 1 if Grid Engine does not run jobs)
#   scripts/ci/sge.sh stop      stop execd and qmaster (the set-up stays for the next start)
set -euo pipefail
action=${1:-start}
queue=all.q
export SGE_ROOT=/var/lib/gridengine SGE_CELL=default
common=$SGE_ROOT/$SGE_CELL/common
say() { echo "sge.sh: $*"; }
die() { echo "sge.sh: $*" >&2; exit 1; }
host=$(hostname)
tmp=$(mktemp -d /tmp/sge-sh.XXXXXX)
trap 'rm -rf "$tmp"' EXIT

qmaster_pidfile=/var/spool/gridengine/qmaster/qmaster.pid
execd_pidfile=/var/spool/gridengine/execd/$host/execd.pid

# The pid of daemon $1 (sge_qmaster or sge_execd) from its pid file, if it runs.
daemon_pid() {
    local file=$execd_pidfile pid
    [ "$1" = sge_qmaster ] && file=$qmaster_pidfile
    pid=$(cat "$file" 2>/dev/null) || return 1
    [ -n "$pid" ] && [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = "$1" ] && echo "$pid"
}
running() { daemon_pid "$1" >/dev/null; }

# qconf "$@", quiet unless it fails (then its messages and a failure).
q() {
    local out
    out=$(timeout 20 qconf "$@" 2>&1) || { echo "$out" >&2; die "qconf $* failed"; }
}

# Wait up to $1 seconds for command "${@:2}" to succeed.
wait_for() {
    local limit=$1; shift
    local deadline=$((SECONDS + limit))
    until "$@" >/dev/null 2>&1; do
        [ $SECONDS -lt $deadline ] || return 1
        sleep 0.5
    done
}

# The state column of the queue instance on this host ("" when usable); fails if not listed.
queue_states() {
    local line
    line=$(timeout 20 qstat -f -q "$queue@$host" 2>/dev/null | grep -E "^$queue@" | head -1) || return 1
    [ -n "$line" ] || return 1
    # queuename qtype resv/used/tot. load_avg arch [states]
    echo "$line" | awk '{print $6}'
}
queue_usable() {
    local states
    states=$(queue_states) || return 1
    [ -z "$states" ]
}

check_job() {
    local out=$tmp/check.out id
    id=$(cd "$tmp" && echo 'echo "ran as $(id -un) on $(hostname) in job $JOB_ID"' \
        | timeout 30 qsub -terse -N sge-sh-check -S /bin/sh -j y -o "$out" -cwd) \
        || { say "qsub of the check job failed"; return 1; }
    if ! wait_for 120 grep -q "in job" "$out"; then
        timeout 20 qstat -j "$id" 2>&1 | grep -Ei 'error|reason|cannot' | sed 's/^/sge.sh:   /' || true
        timeout 20 qdel "$id" >/dev/null 2>&1 || true
        say "the check job $id did not run within 120 s (qstat -f: $(queue_states || echo 'no queue'))"
        return 1
    fi
    say "check job $id: $(cat "$out")"
}

not_running() { ! running "$1"; }

# Stop daemon $1 politely with qconf "${@:2}", then by its pid.
stop_daemon() {
    local name=$1 pid; shift
    pid=$(daemon_pid "$name") || return 0
    timeout 30 qconf "$@" >/dev/null 2>&1 || kill -TERM "$pid" 2>/dev/null || true
    if ! wait_for 30 not_running "$name"; then
        kill -KILL "$pid" 2>/dev/null || true
        wait_for 10 not_running "$name" || die "$name (pid $pid) does not end"
    fi
    say "stopped $name (pid $pid)"
}

stop() {
    [ "$(id -u)" = 0 ] || die "must run as root"
    stop_daemon sge_execd -ke "$host"
    stop_daemon sge_qmaster -km
    say "Grid Engine is stopped (scripts/ci/sge.sh starts it again)"
}

case $action in
    stop) stop; exit 0 ;;
    check)
        command -v qstat >/dev/null || die "Grid Engine is not installed (run scripts/ci/sge.sh as root)"
        queue_usable || die "the queue $queue@$host is not usable (run scripts/ci/sge.sh as root)"
        check_job || exit 1
        exit 0 ;;
    start) ;;
    *) die "unknown action '$action': use start, check or stop" ;;
esac

[ "$(id -u)" = 0 ] || die "must run as root (it installs packages and starts daemons)"
slots=${SGE_SLOTS:-$(nproc)}
[[ $slots =~ ^[1-9][0-9]*$ ]] || die "SGE_SLOTS must be a positive number, not '$slots'"

# -- /etc/hosts: this host's name first on 127.0.0.1 --------------------------------
if [ "$(getent hosts 127.0.0.1 | awk '{print $2}')" != "$host" ]; then
    # rewrite in place (the file may be a mount point), other lines unchanged
    { echo "127.0.0.1 $host  # scripts/ci/sge.sh: Grid Engine wants this name first"
      cat /etc/hosts; } > "$tmp/hosts"
    cat "$tmp/hosts" > /etc/hosts
    say "/etc/hosts: added '127.0.0.1 $host' as the first line"
fi
[ "$(getent hosts 127.0.0.1 | awk '{print $2}')" = "$host" ] \
    || die "127.0.0.1 still does not resolve to $host; check /etc/hosts and /etc/nsswitch.conf"

# -- packages -----------------------------------------------------------------------
packages=(gridengine-common gridengine-client gridengine-master gridengine-exec)
missing=()
for p in "${packages[@]}"; do
    dpkg-query -W -f '${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    debconf-set-selections <<EOF
gridengine-common shared/gridengineconfig boolean true
gridengine-common shared/gridenginecell string $SGE_CELL
gridengine-common shared/gridenginemaster string $host
EOF
    if ! apt-cache show gridengine-master >/dev/null 2>&1; then
        say "apt-get update"
        timeout 600 apt-get update -qq
    fi
    say "installing ${missing[*]}"
    timeout 900 env DEBIAN_FRONTEND=noninteractive \
        apt-get install -y -qq --no-install-recommends "${missing[@]}" >"$tmp/apt.log" 2>&1 \
        || { tail -20 "$tmp/apt.log" >&2; die "apt-get install ${missing[*]} failed"; }
fi
[ -f "$common/bootstrap" ] || die "$common/bootstrap is missing: the cluster was not \
initialised (apt-get purge ${packages[*]}, then run this script again)"

# -- act_qmaster --------------------------------------------------------------------
if [ "$(cat "$common/act_qmaster" 2>/dev/null)" != "$host" ]; then
    echo "$host" > "$common/act_qmaster"
    chown sgeadmin:sgeadmin "$common/act_qmaster"
    say "$common/act_qmaster: set to $host"
    if running sge_qmaster; then
        stop
    fi
fi

# -- qmaster ------------------------------------------------------------------------
mkdir -p /var/run/gridengine
chown sgeadmin:sgeadmin /var/run/gridengine
if ! running sge_qmaster; then
    SGE_MASTER_PIDFILE=/var/run/gridengine/qmaster.pid timeout 60 /usr/sbin/sge_qmaster
    say "started sge_qmaster"
fi
wait_for 60 timeout 10 qconf -sh || die "sge_qmaster does not answer qconf within 60 s \
(see /var/spool/gridengine/qmaster/messages)"

# -- global configuration: root may run jobs ----------------------------------------
timeout 20 qconf -sconf global | grep -v '^#' > "$tmp/current"
sed -E -e 's/^(min_uid[[:space:]]+).*/\10/' -e 's/^(min_gid[[:space:]]+).*/\10/' \
    "$tmp/current" > "$tmp/global"
if ! cmp -s "$tmp/current" "$tmp/global"; then
    # -Mconf takes the configuration's name from the file's name
    (cd "$tmp" && q -Mconf global)
    say "global configuration: min_uid 0, min_gid 0 (root may run jobs)"
fi

# -- scheduler: dispatch within seconds ---------------------------------------------
timeout 20 qconf -ssconf > "$tmp/sched.now"
sed -E -e 's/^(schedule_interval[[:space:]]+).*/\10:0:2/' \
       -e 's/^(flush_submit_sec[[:space:]]+).*/\11/' \
       -e 's/^(flush_finish_sec[[:space:]]+).*/\11/' "$tmp/sched.now" > "$tmp/sched"
if ! cmp -s "$tmp/sched.now" "$tmp/sched"; then
    q -Msconf "$tmp/sched"
    say "scheduler: schedule_interval 0:0:2, flush_submit_sec 1, flush_finish_sec 1"
fi

# -- this host: admin, submit and execution host ------------------------------------
if ! timeout 20 qconf -sh 2>/dev/null | grep -qx "$host"; then
    q -ah "$host"
    say "added $host as an administrative host"
fi
if ! timeout 20 qconf -ss 2>/dev/null | grep -qx "$host"; then
    q -as "$host"
    say "added $host as a submit host"
fi
if ! timeout 20 qconf -sel 2>/dev/null | grep -qx "$host"; then
    cat > "$tmp/exechost" <<EOF
hostname              $host
load_scaling          NONE
complex_values        NONE
user_lists            NONE
xuser_lists           NONE
projects              NONE
xprojects             NONE
usage_scaling         NONE
report_variables      NONE
EOF
    q -Ae "$tmp/exechost"
    say "added $host as an execution host"
fi

# -- the queue ----------------------------------------------------------------------
if ! timeout 20 qconf -sql 2>/dev/null | grep -qx "$queue"; then
    cat > "$tmp/queue" <<EOF
qname                 $queue
hostlist              $host
seq_no                0
load_thresholds       NONE
suspend_thresholds    NONE
nsuspend              1
suspend_interval      00:05:00
priority              0
min_cpu_interval      00:05:00
processors            UNDEFINED
qtype                 BATCH INTERACTIVE
ckpt_list             NONE
pe_list               NONE
rerun                 FALSE
slots                 $slots
tmpdir                /tmp
shell                 /bin/sh
prolog                NONE
epilog                NONE
shell_start_mode      posix_compliant
starter_method        NONE
suspend_method        NONE
resume_method         NONE
terminate_method      NONE
notify                00:00:60
owner_list            NONE
user_lists            NONE
xuser_lists           NONE
subordinate_list      NONE
complex_values        NONE
projects              NONE
xprojects             NONE
calendar              NONE
initial_state         default
s_rt                  INFINITY
h_rt                  INFINITY
s_cpu                 INFINITY
h_cpu                 INFINITY
s_fsize               INFINITY
h_fsize               INFINITY
s_data                INFINITY
h_data                INFINITY
s_stack               INFINITY
h_stack               INFINITY
s_core                INFINITY
h_core                INFINITY
s_rss                 INFINITY
h_rss                 INFINITY
s_vmem                INFINITY
h_vmem                INFINITY
EOF
    q -Aq "$tmp/queue"
    say "added queue $queue on $host with $slots slots"
else
    # a queue left by an earlier set-up: make the attributes the tests need so
    for pair in "hostlist $host" "slots $slots" "load_thresholds NONE" "pe_list NONE"; do
        set -- $pair
        now=$(timeout 20 qconf -sq "$queue" | awk -v k="$1" '$1 == k {print $2}')
        if [ "$now" != "$2" ]; then
            q -mattr queue "$1" "$2" "$queue"
            say "queue $queue: $1 $2 (was $now)"
        fi
    done
fi

# -- execd --------------------------------------------------------------------------
if ! running sge_execd; then
    mkdir -p /var/spool/gridengine/execd
    chown sgeadmin:sgeadmin /var/spool/gridengine/execd
    timeout 60 /usr/sbin/sge_execd
    say "started sge_execd"
fi
if ! wait_for 120 queue_usable; then
    die "the queue $queue@$host is not usable after 120 s (qstat -f states: \
'$(queue_states || echo 'not listed')'; see /var/spool/gridengine/execd/$host/messages)"
fi
say "queue $queue@$host is usable ($slots slots)"
check_job || die "Grid Engine runs but did not run the check job"
say "Grid Engine is set up (scripts/ci/sge.sh stop stops it)"
