"""Tier 4: ``ipcluster MODE --daemon``, ``status`` and ``stop`` with the real
launchers: the engines register from the launcher's job, do real work, and
``stop`` leaves no job, process or record behind.

Each mode needs its component (set up by the scripts under ``scripts/ci/``,
which ``.ci/run`` runs); without it the test is skipped, naming the script
(under ``CI=true`` it fails instead).
"""
import re
import sys
from pathlib import Path

import pytest

from ipkernel.cluster import engineset, pidfiles
from ipkernel.clusterdir import MULTIENGINE_FURL, ClusterDir

from tier4 import require, require_sge, require_slurm

pytestmark = [pytest.mark.tier4, pytest.mark.timeout(420)]

SESSION = Path(__file__).with_name("ipcluster_work_session.py")


def session_values(output, label):
    return re.search(rf"^{label} (.*)$", output, re.M).group(1).split()


@pytest.fixture
def cluster_dir(tmp_path, reaper, ipcluster):
    """A cluster directory; whatever runs there is stopped afterwards."""
    path = ClusterDir(reaper.add_cluster_dir(tmp_path / "cluster")).create()
    yield path
    if pidfiles.scan(path.pid) or engineset.saved_sets(path):
        ipcluster("stop", "--cluster-dir", path.path, timeout=120)
    for leftover in engineset.saved_sets(path):
        leftover.stop(timeout=60)


def round_trip(ipcluster, reaper, cluster_dir, mode_args, n, env_var, *flags):
    """start --daemon, status, real work, stop; return the work session's output,
    the engine set's record and the JOB column of ``status``."""
    started = ipcluster(*mode_args, "-n", n, "--daemon", "--cluster-dir", cluster_dir.path,
                        timeout=360)
    assert started.returncode == 0, started.stdout + started.stderr
    assert "run in the background" in started.stdout
    status = ipcluster("status", "--cluster-dir", cluster_dir.path, timeout=60)
    assert status.returncode == 0, status.stdout + status.stderr
    mode = mode_args[0]
    assert re.search(rf"^\S+\s+{mode}\s+\S+", status.stdout, re.M), status.stdout
    [record] = [s for s in engineset.saved_sets(cluster_dir)
                if getattr(s, "role", "engine") == "engine"]
    output = reaper.run_session(SESSION, cluster_dir.furl_file(MULTIENGINE_FURL), n, env_var,
                                *flags, ok="WORK SESSION OK", timeout=300)
    pids = [int(p) for p in session_values(output, "pids")]
    stopped = ipcluster("stop", "--cluster-dir", cluster_dir.path, timeout=120)
    assert stopped.returncode == 0, stopped.stdout + stopped.stderr
    assert engineset.saved_sets(cluster_dir) == []
    assert not list((cluster_dir.path / engineset.JOBS_DIR).glob("*"))   # no record, no script
    assert record.poll() is not None   # the launcher no longer lists it
    assert reaper.all_gone(pids, timeout=30)
    assert not [r for r in pidfiles.scan(cluster_dir.pid) if r.alive]
    return output, record, job_of(status.stdout, mode)


def test_mpiexec_engines_are_one_mpi_job(ipcluster, reaper, cluster_dir):
    from ipkernel.cluster import mpi
    import importlib.util
    require(None if mpi.default_mpiexec() else "no mpiexec next to this Python or on PATH",
            "scripts/ci/mpi.sh .venv")
    require(None if importlib.util.find_spec("mpi4py") else "mpi4py is not installed",
            "scripts/ci/mpi.sh .venv")
    output, _, job = round_trip(ipcluster, reaper, cluster_dir,
                                ["mpiexec", "--mpi", "mpi4py"], 3, "PMI_RANK", "mpi")
    assert job.isdigit()   # mpiexec's pid
    assert sorted(session_values(output, "env")) == ["0", "1", "2"]


def job_of(status_output, mode):
    """The JOB column of the ``ipcluster status`` row of ``mode``."""
    return re.search(rf"^\S+\s+{mode}\s+(\S+)", status_output, re.M).group(1)


def test_slurm_engines_are_a_job_array(ipcluster, reaper, cluster_dir):
    require_slurm()
    output, _, job = round_trip(ipcluster, reaper, cluster_dir, ["slurm"], 2,
                                "SLURM_ARRAY_JOB_ID")
    assert set(session_values(output, "env")) == {job.split("_")[0]}


def test_sge_engines_are_a_job_array(ipcluster, reaper, cluster_dir):
    require_sge()
    output, _, job = round_trip(ipcluster, reaper, cluster_dir, ["sge"], 2, "JOB_ID")
    assert set(session_values(output, "env")) == {job.split(".")[0]}


def test_the_cluster_api_adds_removes_and_restarts_slurm_engines(reaper, tmp_path):
    require_slurm()
    cluster_dir = reaper.add_cluster_dir(tmp_path / "cluster")
    output = reaper.run_session(Path(__file__).with_name("cluster_api_session.py"), "slurm",
                                cluster_dir, ok="CLUSTER API SESSION OK", timeout=360)
    pids = [int(p) for p in session_values(output, "pids")]
    assert reaper.all_gone(pids, timeout=30)
    assert engineset.saved_sets(ClusterDir(cluster_dir)) == []


def test_the_controller_runs_in_a_slurm_job_too(ipcluster, reaper, cluster_dir):
    require_slurm()
    output, _, job = round_trip(ipcluster, reaper, cluster_dir,
                                ["slurm", "--controller", "slurm"], 2, "SLURM_ARRAY_JOB_ID")
    assert set(session_values(output, "env")) == {job.split("_")[0]}
    log = (cluster_dir.log / "ipcluster.log").read_text()
    assert re.search(r"ipcluster ready: ipcontroller Slurm job \d+", log), log[-2000:]


def test_ctrl_c_in_the_foreground_cancels_the_slurm_job(reaper, tmp_path):
    import signal
    import subprocess
    require_slurm()
    cluster_dir = reaper.add_cluster_dir(tmp_path / "cluster")
    out = tmp_path / "slurm.out"
    with open(out, "w") as f:
        popen = reaper.add_popen(subprocess.Popen(
            [sys.executable, "-m", "ipkernel.cluster", "slurm", "-n", "2", "--cluster-dir",
             str(cluster_dir)], stdout=f, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL))

    def ready():
        assert popen.poll() is None, out.read_text()
        return "ipcluster ready" in out.read_text()
    reaper.wait_for(ready, "ipcluster slurm to be ready", 300)
    job = re.search(r"\(slurm: (\d+)", out.read_text()).group(1)
    assert job in subprocess.run(["squeue", "-h", "-o", "%A"], capture_output=True,
                                 text=True, timeout=30).stdout
    popen.send_signal(signal.SIGINT)
    assert popen.wait(120) == 0, out.read_text()
    listed = subprocess.run(["squeue", "-h", "-j", job], capture_output=True, text=True,
                            timeout=30)
    assert listed.stdout.strip() == "", listed.stdout
    assert engineset.saved_sets(ClusterDir(cluster_dir)) == []
    assert "SIGINT received" in out.read_text()


def test_a_refused_submission_fails_the_daemon_with_the_schedulers_words(ipcluster, reaper,
                                                                          cluster_dir):
    require_slurm()
    started = ipcluster("slurm", "-n", 1, "-q", "nosuch", "--daemon", "--cluster-dir",
                        cluster_dir.path, timeout=120)
    assert started.returncode == 1, started.stdout + started.stderr
    assert "the cluster did not start" in started.stderr
    assert "sbatch" in started.stderr and "nosuch" in started.stderr, started.stderr
    assert engineset.saved_sets(cluster_dir) == []
    assert not [r for r in pidfiles.scan(cluster_dir.pid) if r.alive]
