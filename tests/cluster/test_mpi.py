"""The mpiexec launcher (:mod:`ipkernel.cluster.mpi`).

Tier 1: the command line it builds, the errors without mpiexec, records.
Tier 4: engines as one real MPICH job (``scripts/ci/mpi.sh .venv``
installs mpich and mpi4py from PyPI): ranks are engine ids, an allreduce
across the engines works, ``stop`` leaves no process of the job behind,
also when called from the record in another process.  The blocking client
runs in a session script (mpi_session.py), not under the test's reactor.
"""
import importlib.util
import os
import re
import sys
import time
from pathlib import Path

import pytest

from ipkernel import pids
from ipkernel.cluster import engineset, mpi
from ipkernel.cluster.launcher import LaunchError
from ipkernel.cluster.mpi import MPIEngineSet
from ipkernel.clusterdir import ClusterDir

from tier4 import require

SETUP = "scripts/ci/mpi.sh .venv"
SESSION = Path(__file__).with_name("mpi_session.py")


# -- tier 1: no mpiexec needed ---------------------------------------------------------

def test_command_line(tmp_path):
    cd = ClusterDir(tmp_path / "c")
    mpiexec = tmp_path / "mpiexec"   # (never run)
    mpiexec.write_text("")
    mpiexec.chmod(0o755)
    s = MPIEngineSet(cd, 4, mpiexec=str(mpiexec), mpi_args="-hosts a,b -ppn 2",
                     engine_command="/env/bin/python -m ipkernel.engine", engine_args=["-v"],
                     name="job1")
    assert s.command() == [str(mpiexec), "-n", "4", "-hosts", "a,b", "-ppn", "2",
                           "/env/bin/python", "-m", "ipkernel.engine",
                           "--cluster-dir", str(cd.path), "-v", "--exit-with-parent",
                           "--mpi", "mpi4py"]
    assert s.log_file == cd.log / "ipengine-mpi-job1.log"
    plain = MPIEngineSet(cd, 2, mpi=None, name="job2").command(mpiexec="mpiexec")
    assert plain[:3] == ["mpiexec", "-n", "2"] and "--mpi" not in plain
    assert plain[3:6] == engineset.default_engine_command()


def test_mode_is_registered():
    assert engineset.engine_set_class("mpirun") is MPIEngineSet


def test_hosts_shown(tmp_path):
    hostfile = tmp_path / "hosts"
    hostfile.write_text("# the nodes\nnode1:2\nnode2 slots=4\n\n")
    assert mpi.hosts_of(["-f", str(hostfile)]) == "node1,node2"
    assert mpi.hosts_of(["-hosts", "a,b"]) == "a,b"
    assert mpi.hosts_of(["--host=c"]) == "c"
    assert mpi.hosts_of([]) == os.uname().nodename


def test_no_mpiexec_says_what_to_install(tmp_path, monkeypatch):
    monkeypatch.setattr(mpi, "default_mpiexec", lambda: None)
    s = MPIEngineSet(tmp_path / "c", 2)
    with pytest.raises(LaunchError, match=r"pip install 'ipkernel\[mpi\]'"):
        s.start()
    missing = MPIEngineSet(tmp_path / "c", 2, mpiexec=str(tmp_path / "no-mpiexec"))
    with pytest.raises(LaunchError, match="no-mpiexec.*not found"):
        missing.start()
    assert s.poll() is None and s.describe()[0]["state"] == "not started"
    s.stop()    # nothing to stop


def test_bad_options(tmp_path):
    with pytest.raises(ValueError, match="mpi must be"):
        MPIEngineSet(tmp_path, 2, mpi="openmpi")
    with pytest.raises(ValueError, match="positive number"):
        MPIEngineSet(tmp_path, 0)


def test_record_of_a_reused_pid_kills_nothing(tmp_path):
    """A record whose pid now belongs to another process (a different start
    time): that process is neither reported running nor signalled."""
    cd = ClusterDir(tmp_path / "c").create()
    s = MPIEngineSet(cd, 2, mpi_args=["-hosts", "x"], name="old")
    s.pid, s.started = os.getpid(), pids.start_ticks(os.getpid()) + 1
    s.save()
    [back] = engineset.saved_sets(cd)
    assert isinstance(back, MPIEngineSet)
    assert (back.pid, back.started, back.mpi_args) == (s.pid, s.started, ["-hosts", "x"])
    assert not back.running() and back.job_pids() == []
    assert back.describe() == [{"job": os.getpid(), "hosts": "x", "state": "gone"}]
    back.stop(timeout=5)    # would have sent us SIGTERM otherwise
    assert "no longer running" in back.poll()


# -- tier 4: a real MPICH -------------------------------------------------------------

def _missing():
    if mpi.default_mpiexec() is None:
        return f"no mpiexec next to {sys.executable} or on PATH"
    if importlib.util.find_spec("mpi4py") is None:
        return f"mpi4py cannot be imported by {sys.executable}"
    return None


@pytest.fixture
def mpi_ready():
    require(_missing(), SETUP)


def session_pids(output, label="pids"):
    return [int(p) for p in re.search(rf"^{label} (.*)$", output, re.M).group(1).split()]


@pytest.mark.tier4
@pytest.mark.timeout(300)
def test_engines_are_ranks_and_allreduce_works(mpi_ready, cluster_dir, reaper):
    """Three engines in one mpiexec: id == rank, an allreduce on all of them,
    stop() leaves no process of the job (see mpi_session.py)."""
    output = reaper.run_session(SESSION, cluster_dir.path, "work", ok="MPI SESSION OK",
                                timeout=240)
    job = session_pids(output)
    assert len(job) >= 5    # mpiexec, its proxy, three engines (and their pulses)
    assert reaper.all_gone(job, timeout=5), f"left running: {job}"
    assert engineset.saved_sets(cluster_dir) == []
    log = (cluster_dir.log / "ipengine-mpi-session-work.log").read_text()
    assert log.count("engine running under MPI") == 3


@pytest.mark.tier4
@pytest.mark.timeout(300)
def test_stop_from_the_record(mpi_ready, cluster_dir, reaper):
    """``ipcluster stop`` in another process: the set rebuilt from its record
    (no Popen, only mpiexec's pid and start time) stops the whole job."""
    output = reaper.run_session(SESSION, cluster_dir.path, "leave", os.getpid(),
                                ok="MPI SESSION LEFT", timeout=240)
    job = session_pids(output)
    reaper.add_pids(*job, *session_pids(output, "controller"))
    [back] = engineset.saved_sets(cluster_dir)
    assert isinstance(back, MPIEngineSet) and back.launcher is None
    assert back.pid == session_pids(output, "mpiexec")[0] and back.running()
    assert back.describe()[0]["state"] == "running"
    assert set(job) <= set(back.job_pids())
    back.stop(timeout=60)
    assert reaper.all_gone(job, timeout=1), f"left running: {back.job_pids()}"
    assert back.job_pids() == [] and not back.running()
    assert "no longer running" in back.poll()
    back.forget()
    back.stop()     # again: nothing left, no error


@pytest.mark.tier4
@pytest.mark.timeout(120)
def test_a_program_mpiexec_cannot_start_is_reported(mpi_ready, cluster_dir, tmp_path):
    bad = tmp_path / "no-such-python"
    s = MPIEngineSet(cluster_dir, 2, engine_command=[str(bad), "-m", "ipkernel.engine"])
    s.save()    # (the cluster_dir fixture stops it if the test fails)
    s.start()
    deadline = time.monotonic() + 60
    while s.poll() is None:
        assert time.monotonic() < deadline, "mpiexec still runs a program that does not exist"
        time.sleep(0.05)
    ended = s.poll()
    assert "exited with status" in ended and str(s.log_file) in ended
    assert str(bad) in ended.split("\n", 1)[1]     # mpiexec's own words, quoted
    assert s.job_pids() == []
    s.forget()
