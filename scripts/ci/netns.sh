#!/usr/bin/env bash
# Two "hosts" for the tier-4 ssh tests: network namespaces NAME-a and NAME-b
# joined by a veth pair (eth-a in NAME-a, eth-b in NAME-b; both ends are made
# straight inside the namespaces, so nothing appears in this host's own
# namespace), NAME-a with 10.213.INDEX.1/24 and NAME-b with 10.213.INDEX.2/24,
# loopback up in both.  Needs root and iproute2's "ip netns".
#
#   scripts/ci/netns.sh up NAME INDEX    (INDEX in 1..250)
#   scripts/ci/netns.sh down NAME
#
# Both are idempotent: "up" on a pair that is already up with the same
# addresses does nothing, a half-made pair is removed and made again;
# "down" on a pair that is not there does nothing.  "down" also ends the
# processes still running inside the two namespaces (they can only be ones
# started there by the tests), then removes the veth and the namespaces.
set -euo pipefail

usage() {
    echo "usage: $0 up NAME INDEX | down NAME  (NAME: letters, digits, - and _, at most 24;" \
         "INDEX: 1..250)" >&2
    exit 2
}

check_name() {
    [[ $1 =~ ^[A-Za-z0-9_][A-Za-z0-9_-]{0,23}$ ]] || {
        echo "netns.sh: bad NAME '$1'" >&2; usage; }
}

have_ns() { ip netns list 2>/dev/null | awk '{print $1}' | grep -qx -- "$1"; }

# End what still runs inside namespace $1: SIGTERM, then SIGKILL after 5 s.
end_pids() {
    local ns=$1 pids i
    pids=$(ip netns pids "$ns" 2>/dev/null | tr '\n' ' ')
    [ -n "${pids// }" ] || return 0
    echo "netns.sh: ending processes still in $ns: $pids"
    kill -TERM $pids 2>/dev/null || true
    for i in $(seq 50); do
        pids=$(ip netns pids "$ns" 2>/dev/null | tr '\n' ' ')
        [ -n "${pids// }" ] || return 0
        sleep 0.1
    done
    echo "netns.sh: killing processes still in $ns: $pids"
    kill -KILL $pids 2>/dev/null || true
}

down() {
    local name=$1 ns did=0
    for ns in "$name-a" "$name-b"; do
        have_ns "$ns" || continue
        end_pids "$ns"
        # Deleting one end deletes the pair, even if a namespace lingers.
        ip -n "$ns" link del eth-${ns##*-} 2>/dev/null || true
        ip netns del "$ns"
        echo "netns.sh: removed namespace $ns"
        did=1
    done
    [ $did = 1 ] || echo "netns.sh: no namespaces $name-a/$name-b: nothing to remove"
}

is_up() {
    local name=$1 index=$2
    have_ns "$name-a" && have_ns "$name-b" \
        && ip -n "$name-a" -br addr show dev eth-a 2>/dev/null | grep -q " 10\.213\.$index\.1/24" \
        && ip -n "$name-b" -br addr show dev eth-b 2>/dev/null | grep -q " 10\.213\.$index\.2/24"
}

up() {
    local name=$1 index=$2
    if is_up "$name" "$index"; then
        echo "netns.sh: $name-a (10.213.$index.1) and $name-b (10.213.$index.2) already up"
        return 0
    fi
    if have_ns "$name-a" || have_ns "$name-b"; then
        echo "netns.sh: $name-a/$name-b half made or with other addresses: making them again"
        down "$name"
    fi
    ip netns add "$name-a"
    ip netns add "$name-b"
    ip link add eth-a netns "$name-a" type veth peer name eth-b netns "$name-b"
    ip -n "$name-a" link set lo up
    ip -n "$name-b" link set lo up
    ip -n "$name-a" addr add "10.213.$index.1/24" dev eth-a
    ip -n "$name-b" addr add "10.213.$index.2/24" dev eth-b
    ip -n "$name-a" link set eth-a up
    ip -n "$name-b" link set eth-b up
    # The carrier comes up a moment later: wait (up to 10 s) for both ends.
    local i
    for i in $(seq 100); do
        if ip -n "$name-a" link show eth-a | grep -q 'state UP' \
           && ip -n "$name-b" link show eth-b | grep -q 'state UP'; then
            break
        fi
        if [ "$i" = 100 ]; then
            echo "netns.sh: the veth eth-a/eth-b did not come up within 10 s" >&2
            down "$name"
            exit 1
        fi
        sleep 0.1
    done
    echo "netns.sh: made $name-a (10.213.$index.1/24) and $name-b (10.213.$index.2/24)," \
         "joined by veth eth-a/eth-b"
}

[ $# -ge 2 ] || usage
if [ "$(id -u)" != 0 ]; then
    echo "netns.sh: needs root (ip netns add)" >&2
    exit 3
fi
command -v ip >/dev/null 2>&1 || { echo "netns.sh: no 'ip' command (apt-get install iproute2)" >&2; exit 3; }
case $1 in
    up)
        [ $# = 3 ] || usage
        check_name "$2"
        [[ $3 =~ ^[0-9]+$ ]] && [ "$3" -ge 1 ] && [ "$3" -le 250 ] || {
            echo "netns.sh: bad INDEX '$3'" >&2; usage; }
        up "$2" "$3"
        ;;
    down)
        [ $# = 2 ] || usage
        check_name "$2"
        down "$2"
        ;;
    *) usage ;;
esac
