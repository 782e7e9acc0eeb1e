"""Book-keeping of bench/tlsspeed.py (tier 1) and one tiny real run (tier 3)."""
import subprocess
import sys

import pytest
from benchload import ROOT, load

tlsspeed = load("bench.tlsspeed")
MB = tlsspeed.MB


@pytest.mark.tier1
def test_median_rate_and_none():
    assert tlsspeed.median_rate(2 * MB, [1.0, 4.0, 0.5]) == 2.0
    assert tlsspeed.median_rate(MB, []) is None


@pytest.mark.tier1
def test_rows_ratio_and_missing():
    results = {"plain": {("push", MB): 100.0, ("pull", MB): 50.0},
               "tls": {("push", MB): 80.0}}
    table = tlsspeed.rows(results, [MB])
    assert table[0] == ("push", 1, 100.0, 80.0, pytest.approx(0.8))
    assert table[1] == ("pull", 1, 50.0, None, None)
    lines = tlsspeed.render(table)
    assert "0.80" in lines[1] and lines[2].rstrip().endswith("-")


@pytest.mark.tier3
@pytest.mark.timeout(240)
def test_tiny_run_prints_both_modes():
    proc = subprocess.run([sys.executable, "-m", "bench.tlsspeed", "--sizes", "0.5",
                           "--rounds", "1", "--deadline", "120"],
                          cwd=ROOT, capture_output=True, text=True, timeout=220)
    assert proc.returncode == 0, proc.stderr[-2000:]
    lines = proc.stdout.splitlines()
    assert [line.split()[0] for line in lines[1:]] == ["push", "pull"]
    assert all("-" not in line.split()[2:] for line in lines[1:]), proc.stdout
