"""Tier-3 helpers for LocalCluster, the launchers and ``ipcluster``.

* ``reaper``: remembers every pid and cluster directory a test hands it;
  afterwards it stops whatever still runs (SIGTERM, SIGKILL after a
  timeout), including processes named by the directories' pid files, so a
  failing test leaves nothing behind.
* ``ipcluster(*args, timeout=...)``: runs the ``ipcluster`` console script
  (next to this Python) to completion, bounded in time.
* ``reaper.run_session(script, *args, ok=LINE, timeout=S)``: runs a
  session script (``*_session.py`` beside the tests) to its end and checks
  that it exited 0 with ``LINE`` last.
* ``wait_for(check, what, timeout)`` (also ``reaper.wait_for``): bounded
  polling of an external state.
* ``cluster_logs_keep_secrets`` (autouse): the logs of every LocalCluster a
  test stops (before its temporary directory is removed) and of every
  cluster directory handed to the reaper are scanned for the swissnums of
  their FURL files and for unredacted FURLs (see ``tests/logsecrets.py``);
  a test whose cluster logged one fails.
"""
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import awaiting
import logsecrets
from ipkernel.cluster import local, pidfiles

#: Bound for anything that should happen soon (a start, an exit).
TIMEOUT = 60.0
STOP_TIMEOUT = 10.0
POLL = 0.05
IPCLUSTER = Path(sys.executable).with_name("ipcluster")


def wait_for(check, what, timeout=TIMEOUT):
    """Poll ``check()`` until it returns something true; return it.  Fails
    the test after ``timeout`` seconds."""
    return awaiting.wait_for(check, what, timeout, POLL)


def all_gone(pids, timeout=STOP_TIMEOUT):
    """True once none of ``pids`` runs (waits up to ``timeout`` seconds)."""
    return not pidfiles.wait_gone(list(pids), timeout)


class Reaper:
    """Stops, after the test, what the test started (see the module doc).

    The module's helpers are reachable through it (``reaper.wait_for``,
    ``reaper.all_gone``).
    """

    wait_for = staticmethod(wait_for)
    all_gone = staticmethod(all_gone)
    TIMEOUT = TIMEOUT

    def __init__(self):
        self.pids = set()
        self.popens = []
        self.cluster_dirs = []

    def add_pids(self, *pids):
        self.pids.update(p for p in pids if p)

    def add_popen(self, popen):
        self.popens.append(popen)
        return popen

    def add_cluster_dir(self, path):
        self.cluster_dirs.append(Path(path))
        return path

    def run_session(self, script, *args, ok, timeout, env=None):
        """Run ``python script *args`` to its end (bounded by ``timeout``);
        assert that it exited 0 with ``ok`` as its last line; its output."""
        popen = self.add_popen(subprocess.Popen(
            [sys.executable, str(script), *map(str, args)], env=env, stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, text=True))
        output, _ = popen.communicate(timeout=timeout)
        assert popen.returncode == 0, output
        assert output.strip().endswith(ok), output
        return output

    def cleanup(self):
        for popen in self.popens:
            self.pids.add(popen.pid)
        for path in self.cluster_dirs:
            self.pids.update(r.pid for r in pidfiles.scan(path / "pid") if r.alive)
        self.pids.discard(os.getpid())
        survivors = pidfiles.terminate(sorted(self.pids), STOP_TIMEOUT)
        for popen in self.popens:
            try:
                popen.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                pass
        for path in self.cluster_dirs:
            logsecrets.check_cluster_dir(path)
        return survivors


@pytest.fixture
def reaper():
    r = Reaper()
    try:
        yield r
    finally:
        survivors = r.cleanup()
        assert not survivors, f"processes {survivors} could not be stopped"


@pytest.fixture(autouse=True)
def cluster_logs_keep_secrets(monkeypatch):
    """Scan the logs of each LocalCluster when it stops (see the module doc)."""
    problems = []
    stop = local._Processes.stop

    def scanning_stop(procs, *args, **kwargs):
        temp, procs.temp_dir = procs.temp_dir, None   # removed here, after the scan
        try:
            stop(procs, *args, **kwargs)
        finally:
            try:
                if procs.controller is not None:
                    logsecrets.check_cluster_dir(procs.controller.cluster.path)
            except AssertionError as exc:
                problems.append(str(exc))
            finally:
                if temp is not None:
                    shutil.rmtree(temp, ignore_errors=True)
    monkeypatch.setattr(local._Processes, "stop", scanning_stop)
    yield
    assert not problems, "\n".join(problems)


@pytest.fixture
def ipcluster():
    """Run ``ipcluster ARGS`` to completion; return the CompletedProcess."""
    def run(*args, timeout=TIMEOUT):
        assert IPCLUSTER.exists(), f"{IPCLUSTER} is missing: pip install -e . makes it"
        return subprocess.run([str(IPCLUSTER), *map(str, args)], capture_output=True,
                              text=True, timeout=timeout, stdin=subprocess.DEVNULL)
    return run


@pytest.fixture
def cluster_dir(tmp_path, reaper):
    """A cluster directory (a ClusterDir) whose recorded engine sets (batch
    jobs, mpiexec, ssh engines) are stopped afterwards, whatever the test did."""
    from ipkernel.cluster import engineset
    from ipkernel.clusterdir import ClusterDir
    path = ClusterDir(reaper.add_cluster_dir(tmp_path / "cluster")).create()
    try:
        yield path
    finally:
        for leftover in engineset.saved_sets(path):
            leftover.stop(timeout=60)
