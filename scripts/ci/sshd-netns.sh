#!/usr/bin/env bash
# A real sshd on the second "host" of the tier-4 ssh tests: inside network
# namespace NS (NAME-b of scripts/ci/netns.sh), on port 22 of its 10.213.x.y
# address, with its own host key and configuration in STATE_DIR (the
# system's /etc/ssh/sshd_config is not read), root login by key only.
#
#   scripts/ci/sshd-netns.sh start NS STATE_DIR
#   scripts/ci/sshd-netns.sh stop STATE_DIR
#
# "start" makes in STATE_DIR (if missing): host key, client key pair
# (id_ed25519), authorized_keys, known_hosts (the host key under the
# address), sshd_config and ssh_config (IdentityFile, UserKnownHostsFile,
# StrictHostKeyChecking yes, BatchMode yes), then starts sshd (its pid in
# STATE_DIR/sshd.pid, its log in STATE_DIR/sshd.log) and checks that
# "ssh -F STATE_DIR/ssh_config ADDR true" works from namespace NAME-a (or
# from NS itself when there is no NAME-a).  A running sshd of STATE_DIR is
# left alone.  "stop" ends the sshd of STATE_DIR's pid file (after checking
# that the pid is that sshd) and nothing else; both are idempotent.
# openssh-server is installed with apt-get when /usr/sbin/sshd is missing.
set -euo pipefail
SSHD=/usr/sbin/sshd

usage() {
    echo "usage: $0 start NS STATE_DIR | stop STATE_DIR" >&2
    exit 2
}

have_ns() { ip netns list 2>/dev/null | awk '{print $1}' | grep -qx -- "$1"; }

# The pid of STATE_DIR's sshd if it runs (it is sshd and was given our config), else nothing.
running_pid() {
    local state=$1 pid
    [ -f "$state/sshd.pid" ] || return 0
    pid=$(tr -dc 0-9 < "$state/sshd.pid")
    [ -n "$pid" ] && [ -r "/proc/$pid/cmdline" ] || return 0
    if tr '\0' ' ' < "/proc/$pid/cmdline" | grep -qF -- "-f $state/sshd_config"; then
        echo "$pid"
    fi
}

install_sshd() {
    [ -x "$SSHD" ] && return 0
    echo "sshd-netns.sh: installing openssh-server (apt-get)"
    timeout 600 apt-get update -qq
    timeout 900 env DEBIAN_FRONTEND=noninteractive \
        apt-get install -y -qq --no-install-recommends openssh-server openssh-client
    [ -x "$SSHD" ] || { echo "sshd-netns.sh: $SSHD still missing after the install" >&2; exit 1; }
}

make_files() {
    local state=$1 addr=$2
    mkdir -p "$state"
    chmod 700 "$state"
    [ -f "$state/host_ed25519_key" ] || \
        ssh-keygen -q -t ed25519 -N '' -C "ipkernel-test-host" -f "$state/host_ed25519_key"
    [ -f "$state/id_ed25519" ] || \
        ssh-keygen -q -t ed25519 -N '' -C "ipkernel-test-client" -f "$state/id_ed25519"
    cp "$state/id_ed25519.pub" "$state/authorized_keys"
    chmod 600 "$state/authorized_keys"
    echo "$addr $(cut -d' ' -f1,2 "$state/host_ed25519_key.pub")" > "$state/known_hosts"
    cat > "$state/sshd_config" <<EOF
# sshd of the ipkernel tier-4 tests (scripts/ci/sshd-netns.sh), in namespace $ns
ListenAddress $addr:22
HostKey $state/host_ed25519_key
PidFile $state/sshd.pid
AuthorizedKeysFile $state/authorized_keys
PermitRootLogin prohibit-password
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
# the state directory usually sits under /tmp (world-writable): no path checks
StrictModes no
UseDNS no
PrintMotd no
PrintLastLog no
AcceptEnv none
# scp uses the SFTP protocol since OpenSSH 9
Subsystem sftp internal-sftp
ClientAliveInterval 5
ClientAliveCountMax 3
LogLevel VERBOSE
EOF
    cat > "$state/ssh_config" <<EOF
# ssh client configuration for the sshd at $addr (scripts/ci/sshd-netns.sh)
Host *
    User root
    Port 22
    IdentityFile $state/id_ed25519
    IdentitiesOnly yes
    UserKnownHostsFile $state/known_hosts
    GlobalKnownHostsFile /dev/null
    StrictHostKeyChecking yes
    BatchMode yes
    PasswordAuthentication no
    ConnectTimeout 10
    ServerAliveInterval 5
    ServerAliveCountMax 3
    LogLevel ERROR
EOF
}

start() {
    local ns=$1 state=$2 addr client pid i
    have_ns "$ns" || { echo "sshd-netns.sh: no network namespace $ns (make it with" \
                            "scripts/ci/netns.sh up NAME INDEX)" >&2; exit 1; }
    addr=$(ip -n "$ns" -4 -o addr show | awk '{print $4}' | cut -d/ -f1 \
           | grep -E '^10\.213\.[0-9]+\.[0-9]+$' | head -n 1 || true)
    [ -n "$addr" ] || { echo "sshd-netns.sh: namespace $ns has no 10.213.x.y address" >&2; exit 1; }
    client=${ns%-b}-a
    have_ns "$client" || client=$ns
    pid=$(running_pid "$state")
    if [ -n "$pid" ]; then
        echo "sshd-netns.sh: sshd of $state already runs (pid $pid)"
    else
        install_sshd
        make_files "$state" "$addr"
        rm -f "$state/sshd.pid"
        mkdir -p /run/sshd     # Debian's sshd needs its privilege separation directory
        "$SSHD" -t -f "$state/sshd_config"
        ip netns exec "$ns" "$SSHD" -f "$state/sshd_config" -E "$state/sshd.log"
        for i in $(seq 100); do
            pid=$(running_pid "$state")
            [ -n "$pid" ] && break
            [ "$i" = 100 ] && { echo "sshd-netns.sh: sshd did not start; its log:" >&2
                                cat "$state/sshd.log" >&2; exit 1; }
            sleep 0.1
        done
        echo "sshd-netns.sh: started sshd (pid $pid) in $ns on $addr:22, state in $state"
    fi
    if ! ip netns exec "$client" timeout 30 ssh -F "$state/ssh_config" "$addr" true; then
        echo "sshd-netns.sh: 'ssh -F $state/ssh_config $addr true' from $client failed;" \
             "sshd's log:" >&2
        tail -n 20 "$state/sshd.log" >&2
        exit 1
    fi
    echo "sshd-netns.sh: ssh -F $state/ssh_config $addr true works from $client"
}

stop() {
    local state=$1 pid i
    pid=$(running_pid "$state")
    if [ -z "$pid" ]; then
        echo "sshd-netns.sh: no sshd of $state runs"
        rm -f "$state/sshd.pid"
        return 0
    fi
    kill -TERM "$pid"
    for i in $(seq 100); do
        [ -d "/proc/$pid" ] || break
        [ "$i" = 100 ] && { echo "sshd-netns.sh: sshd $pid ignored SIGTERM: SIGKILL"; kill -KILL "$pid"; }
        sleep 0.1
    done
    rm -f "$state/sshd.pid"
    echo "sshd-netns.sh: stopped sshd (pid $pid) of $state"
}

[ $# -ge 1 ] || usage
if [ "$(id -u)" != 0 ]; then
    echo "sshd-netns.sh: needs root (sshd in a network namespace)" >&2
    exit 3
fi
case $1 in
    start)
        [ $# = 3 ] || usage
        ns=$2
        state=$(realpath -m -- "$3")
        start "$ns" "$state"
        ;;
    stop)
        [ $# = 2 ] || usage
        stop "$(realpath -m -- "$2")"
        ;;
    *) usage ;;
esac
