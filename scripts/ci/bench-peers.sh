#!/usr/bin/env bash
# Install the bench's peers (the ".[bench]" extras: ipyparallel, dask's
# distributed, numpy, psutil, matplotlib) into virtualenv VENV, so that the
# tests of the bench's peer set-ups (tests/bench/test_bench_encrypted_peers.py)
# run.  Idempotent.
#
#   scripts/ci/bench-peers.sh [VENV]
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
venv=${1:-.venv}
if "$venv/bin/python" -c "import ipyparallel, distributed" 2>/dev/null; then
    echo "bench-peers.sh: ipyparallel and distributed are installed"
    exit 0
fi
timeout 900 "$venv/bin/python" -m pip install -q -e "$root[bench]"
"$venv/bin/python" -c "import ipyparallel, distributed"
echo "bench-peers.sh: installed the bench extras"
