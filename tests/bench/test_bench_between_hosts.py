"""Tier 4: ``python -m bench --remote-engines`` (and ``--remote-client``)
really run, ipkernel only.

The bench makes its own network namespaces (``scripts/ci/netns.sh``), so
this needs root and ``ip netns`` (skipped otherwise, failed under CI).  A
small run in each mode measures (a) and writes its JSON; another is
interrupted with SIGINT (what Ctrl-C sends) while its cluster runs: the
controller was in namespace *a*, the engines in *b*, and afterwards the
namespaces and every process that ran in them are gone.  No figure is checked: speed is for the
bench itself.
"""
import json
import os
import signal
import subprocess
import sys

import pytest

import awaiting
from benchload import ROOT
from netns import skip_or_fail, unavailable

pytestmark = [pytest.mark.tier4, pytest.mark.timeout(400)]

#: Bound of one bench run here (it starts one cluster and runs one workload).
RUN_TIMEOUT = 300


@pytest.fixture(autouse=True)
def namespaces_possible():
    why = unavailable()
    if why:
        skip_or_fail(why)


def bench_argv(tmp_path, *extra, mode="--remote-engines"):
    return [sys.executable, "-m", "bench", mode, "--quick", "--systems",
            "ipkernel", "--json", str(tmp_path / "r.json"), "--timeout", "240", "--verbose",
            *extra]


def child_env():
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    env.pop("IPKERNEL_DIR", None)
    return env


def namespace_pair(output):
    """NAME of the namespaces the run said it made."""
    for line in output.splitlines():
        if line.startswith("made namespaces "):
            return line.split()[2].rsplit("-", 1)[0]
    raise AssertionError(f"the run did not say which namespaces it made:\n{output}")


def namespaces():
    done = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, timeout=30)
    return {line.split()[0] for line in done.stdout.splitlines() if line.strip()}


def pids_in(ns):
    done = subprocess.run(["ip", "netns", "pids", ns], capture_output=True, text=True,
                          timeout=30)
    return {int(p) for p in done.stdout.split()}


def command(pid):
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.mark.parametrize("mode, client_ns", [("remote-engines", "a"), ("remote-client", "b")])
def test_quick_run_measures_and_removes_its_namespaces(tmp_path, mode, client_ns):
    done = subprocess.run(bench_argv(tmp_path, "--only", "a", "--repeat", "2", mode=f"--{mode}"),
                          cwd=ROOT,
                          env=child_env(), capture_output=True, text=True,
                          timeout=RUN_TIMEOUT, stdin=subprocess.DEVNULL)
    output = done.stdout + done.stderr
    assert done.returncode == 0, output
    name = namespace_pair(output)
    assert {f"{name}-a", f"{name}-b"}.isdisjoint(namespaces())
    data = json.loads((tmp_path / "r.json").read_text())
    assert data["meta"]["placement"]["mode"] == mode
    described = data["meta"]["placement"]["described"]
    assert f"engines in {name}-b" in described and f"client in {client_ns}" in described
    (row,) = data["results"]
    assert row["key"] == "a.execute_all"
    cell = row["systems"]["ipkernel"]
    assert cell["errors"] == [] and len(cell["samples"]) == 2 and cell["median"] > 0


def test_interrupted_run_ends_everything_it_started_in_both_namespaces(tmp_path):
    log_path = tmp_path / "bench.log"
    with open(log_path, "wb") as log:
        outer = subprocess.Popen(bench_argv(tmp_path, "--only", "a,c,d", "--repeat", "3"),
                                 cwd=ROOT, env=child_env(), stdout=log,
                                 stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    try:
        output = lambda: log_path.read_text(errors="replace")  # noqa: E731
        awaiting.wait_for(lambda: "a ipkernel rep 1/3" in output() or outer.poll() is not None,
                          "the first measurement", 180, 0.05)
        assert outer.poll() is None, output()
        name = namespace_pair(output())
        in_a, in_b = pids_in(f"{name}-a"), pids_in(f"{name}-b")
        commands_a = [command(p) for p in in_a]
        commands_b = [command(p) for p in in_b]
        assert any("ipkernel.controller" in c for c in commands_a), commands_a
        assert any("-m bench" in c and "--placement remote-engines" in c
                   for c in commands_a), commands_a
        # one `ipengine -n 2` and its two forked engines (with its command line)
        engines = [c for c in commands_b if "ipkernel.engine" in c and "-n 2" in c]
        assert len(engines) == 3, commands_b
        outer.send_signal(signal.SIGINT)
        assert outer.wait(120) == 130, output()
    finally:
        if outer.poll() is None:
            outer.kill()
            outer.wait(30)
    text = output()
    assert "interrupted: stopping the bench inside the namespaces" in text
    assert {f"{name}-a", f"{name}-b"}.isdisjoint(namespaces()), text
    # (a process ended just now may wait a moment to be reaped)
    awaiting.wait_for(lambda: not any(alive(p) for p in in_a | in_b),
                      "every process of the namespaces to be gone", 30, 0.1)
    # what it measured before the interruption is still written
    data = json.loads((tmp_path / "r.json").read_text())
    assert data["meta"]["interrupted"] is True
