#!/usr/bin/env bash
# tmux: the terminal the Ctrl-C and progress-bar tests drive IPython in
# (tests/client/test_terminal.py).  Idempotent; needs root for apt-get.
set -euo pipefail
if command -v tmux >/dev/null 2>&1; then
    echo "tmux.sh: $(tmux -V) is installed"
    exit 0
fi
timeout 600 apt-get update -qq
timeout 900 env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends tmux
tmux -V
