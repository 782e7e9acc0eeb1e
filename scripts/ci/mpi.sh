#!/usr/bin/env bash
# Set up MPI for the tier-4 mpiexec tests: MPICH and mpi4py from PyPI
# (binary wheels, no system packages) installed into virtualenv VENV
# (default: .venv).  mpich puts mpiexec (hydra) into VENV/bin, next to
# VENV/bin/python, where ipkernel's mpiexec launcher looks first; mpi4py's
# wheel loads the MPICH library of the same environment.
#
# Idempotent: packages already there are left alone.  Ends with a check:
# "mpiexec -n 2" of mpi4py must report ranks 0 and 1.
#
#   scripts/ci/mpi.sh [VENV]
set -euo pipefail
venv=${1:-.venv}
python="$venv/bin/python"
if [ ! -x "$python" ]; then
    echo "mpi.sh: no virtualenv at $venv (make one: python3.11 -m venv $venv)" >&2
    exit 2
fi
packages=(mpi4py mpich)
specs=("mpi4py>=4.1" "mpich>=4.3")

if [ -x "$venv/bin/mpiexec" ] && timeout 60 "$python" -c "import mpi4py" 2>/dev/null; then
    echo "mpi.sh: mpi4py and mpich already in $venv"
else
    echo "mpi.sh: installing ${specs[*]} into $venv"
    timeout 600 "$python" -m pip install -q "${specs[@]}"
fi
timeout 60 "$python" -m pip show "${packages[@]}" 2>/dev/null | grep -E '^(Name|Version):' \
    | paste - - | sed 's/^/mpi.sh: /'

# one write per rank: with PYTHONUNBUFFERED print's pieces go out one by one,
# and the two ranks' pieces can interleave
check='import sys; from mpi4py import MPI; w = MPI.COMM_WORLD
sys.stdout.write(f"{w.Get_rank()} {w.Get_size()}\n"); sys.stdout.flush()'
ranks=$(timeout 120 "$venv/bin/mpiexec" -n 2 "$python" -c "$check" | sort | tr '\n' ' ')
if [ "$ranks" != "0 2 1 2 " ]; then
    echo "mpi.sh: mpiexec -n 2 gave ranks '$ranks', expected '0 2 1 2 '" >&2
    exit 1
fi
echo "mpi.sh: $venv/bin/mpiexec -n 2 runs mpi4py ranks 0 and 1"
