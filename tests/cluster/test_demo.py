"""Tier 3: the README's main job, ``python -m ipkernel.demo``, runs to the end on a
local cluster of processes and leaves none behind."""
import re
import subprocess
import sys

import pytest

pytestmark = [pytest.mark.tier3, pytest.mark.timeout(150)]


def test_demo_runs_on_a_local_cluster_and_stops_it(reaper, tmp_path):
    done = subprocess.run([sys.executable, "-m", "ipkernel.demo", "-n", "2"],
                          capture_output=True, text=True, timeout=120, cwd=tmp_path,
                          stdin=subprocess.DEVNULL)
    out = done.stdout
    engine_pids = [int(p) for p in re.findall(r"is process (\d+)", out)]
    reaper.add_pids(*engine_pids)
    assert done.returncode == 0, out + done.stderr
    assert len(engine_pids) == 2
    assert re.search(r"engine ids\s+\[0, 1\]", out)
    assert re.search(r"primes below \d+ \(parallel map\)\s+\d+ in", out)
    assert re.search(r"pi by scatter / compute / gather\s+3\.14159", out)
    assert "[1:execute]: ZeroDivisionError" in out
    assert out.rstrip().endswith("the controller and the 2 engines have stopped")
    assert reaper.all_gone(engine_pids, timeout=0)
