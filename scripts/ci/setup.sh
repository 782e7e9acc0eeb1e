#!/usr/bin/env bash
# Set up the real components of the tier-4 tests on this machine (as root):
# MPICH and mpi4py in virtualenv VENV, a single-node Slurm, a Grid Engine,
# the openssh-server the namespace tests start their sshd from, tmux (the
# terminal of the IPython Ctrl-C tests), Chromium and ChromeDriver (the
# dashboard's browser test), and the bench's peers (ipyparallel,
# dask) in VENV.  Each
# part is a script of its own (scripts/ci/*.sh, idempotent); a part that
# fails is reported and the others still run: its tests then fail under
# CI=true, naming the script.  .ci/run calls this before the tests.
#
#   scripts/ci/setup.sh [VENV]
set -uo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
venv=${1:-.venv}
failed=()

part() {
    local name=$1; shift
    echo "setup.sh: --- $name"
    if ! "$@"; then
        echo "setup.sh: $name FAILED (its tier-4 tests will say so)" >&2
        failed+=("$name")
    fi
}

if [ "$(id -u)" != 0 ]; then
    echo "setup.sh: not root: only MPI and the bench peers are set up (Slurm, Grid Engine" \
         "and sshd need root)"
    part mpi bash "$here/mpi.sh" "$venv"
    part bench-peers bash "$here/bench-peers.sh" "$venv"
    exit 0
fi
if ! command -v sshd >/dev/null 2>&1 && [ ! -x /usr/sbin/sshd ]; then
    part apt-update timeout 600 apt-get update -qq
    part openssh-server timeout 900 env DEBIAN_FRONTEND=noninteractive \
        apt-get install -y -qq --no-install-recommends openssh-server openssh-client
fi
part mpi bash "$here/mpi.sh" "$venv"
part bench-peers bash "$here/bench-peers.sh" "$venv"
part tmux bash "$here/tmux.sh"
part chromium bash "$here/chromium.sh"
[ -f "$here/slurm.sh" ] && part slurm bash "$here/slurm.sh"
[ -f "$here/sge.sh" ] && part sge bash "$here/sge.sh"
if [ ${#failed[@]} -gt 0 ]; then
    echo "setup.sh: failed parts: ${failed[*]}"
else
    echo "setup.sh: every part is set up"
fi
exit 0
