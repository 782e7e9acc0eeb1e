"""Book-keeping of bench/tlsspeed.py (tier 1) and one tiny real run (tier 3)."""
import os
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
def test_rows_ratio_cpu_and_missing():
    results = {"plain": {("push", MB): 100.0, ("pull", MB): 50.0},
               "tls": {("push", MB): 80.0}}
    cpu = {"plain": {("push", MB): 3.0}, "tls": {("push", MB): 4.5}}
    table = tlsspeed.rows(results, [MB], cpu)
    assert table[0] == ("push", 1, 100.0, 80.0, pytest.approx(0.8), 3.0, 4.5)
    assert table[1] == ("pull", 1, 50.0, None, None, None, None)
    lines = tlsspeed.render(table)
    assert "CPU" in lines[0]
    assert lines[1].split()[-3:] == ["0.80", "3.0", "4.5"]
    assert lines[2].split()[-3:] == ["-", "-", "-"]


@pytest.mark.tier1
def test_cpu_of_this_process_grows_and_a_gone_pid_counts_nothing():
    before = tlsspeed.cpu_seconds({os.getpid()})
    sum(i * i for i in range(300_000))  # some CPU work
    assert tlsspeed.cpu_seconds({os.getpid()}) > before
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    assert tlsspeed.cpu_seconds({child.pid}) == 0
    assert child.pid not in tlsspeed.descendants(os.getpid())


@pytest.mark.tier1
def test_socket_costs_render_with_missing_values():
    costs = {("plain", "send"): 0.2, ("plain", "recv"): 0.15, ("tls", "send"): 1.0}
    lines = tlsspeed.render_costs(costs, {"plain": (None, None),
                                          "tls": ("TLSv1.3", "TLS_AES_256_GCM_SHA384")})
    assert lines[1].split() == ["plain", "0.20", "0.15", "-"]
    assert lines[2].split() == ["tls", "1.00", "-", "TLSv1.3", "TLS_AES_256_GCM_SHA384"]
    assert lines[3].split() == ["sealed", "-", "-", "-"]


@pytest.mark.tier2
@pytest.mark.timeout(60)
def test_socket_costs_of_a_small_transfer_over_loopback():
    costs, agreed = tlsspeed.socket_costs(nbytes=MB, rounds=2, chunk=256 << 10)
    assert set(costs) == {(k, s) for k in ("plain", "tls", "sealed") for s in ("send", "recv")}
    assert all(v is not None and v >= 0 for v in costs.values()), costs
    assert agreed["tls"][0].startswith("TLS") and agreed["tls"][1]
    assert agreed["sealed"] == ("sealed records", "AES-256-GCM")
    assert agreed["plain"] == (None, None)


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
