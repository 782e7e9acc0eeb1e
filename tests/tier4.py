"""Tier-4 helpers: is a real external system here, and what to run if not."""
import os
import shutil
import subprocess

import pytest


def require(missing, setup):
    """Skip when ``missing`` (a reason) is set, naming the ``setup`` script;
    under ``CI=true`` fail instead (.ci/run ran the script, so it is a bug)."""
    if missing:
        if os.environ.get("CI") == "true":
            pytest.fail(f"{missing}: .ci/run must run {setup} first")
        pytest.skip(f"{missing}: run {setup}")


def command_answers(*argv, timeout=20):
    """None if ``argv`` runs, exits 0 and prints something within ``timeout``
    seconds; else why not."""
    if shutil.which(argv[0]) is None:
        return f"{argv[0]} is not on PATH"
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout,
                              stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        return f"{' '.join(argv)} did not answer within {timeout} s"
    if done.returncode != 0:
        return f"{' '.join(argv)} failed: {(done.stderr or done.stdout).strip()[:200]}"
    if not done.stdout.strip():
        return f"{' '.join(argv)} lists nothing"
    return None


def require_slurm():
    require(command_answers("sinfo", "-h", "-t", "idle,mixed,allocated", "-o", "%N"),
            "scripts/ci/slurm.sh")


def require_sge():
    require(command_answers("qhost"), "scripts/ci/sge.sh")


def require_tmux():
    require(None if shutil.which("tmux") else "tmux is not on PATH", "scripts/ci/tmux.sh")


def require_chromium():
    """Chromium and ChromeDriver (Debian's) for the dashboard's browser test."""
    missing = [name for name in ("chromium", "chromedriver") if shutil.which(name) is None]
    require(f"{' and '.join(missing)} not on PATH" if missing else None,
            "scripts/ci/chromium.sh")
