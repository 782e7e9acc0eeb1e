"""Tier 4: SlurmEngineSet and BatchControllerJob against a real Slurm.

The single-node Slurm comes from ``scripts/ci/slurm.sh`` (its node is this
host, so the cluster directory in the test's temporary folder is "shared").
Without a Slurm node answering, the tests skip naming the script; under
``CI=true`` they fail instead (``.ci/run`` ran it).
"""
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from ipkernel.cluster.batch.base import BatchControllerJob
from ipkernel.cluster.batch.slurm import SlurmEngineSet
from ipkernel.cluster.launcher import ControllerLauncher, LaunchError
from ipkernel.clusterdir import MULTIENGINE_FURL, ClusterDir

from tier4 import require

pytestmark = [pytest.mark.tier4, pytest.mark.timeout(400)]

SESSION = Path(__file__).with_name("ipcluster_work_session.py")
SETUP = "scripts/ci/slurm.sh"


def slurm_missing():
    """Why Slurm cannot be used here (None if a node answers)."""
    if shutil.which("sinfo") is None or shutil.which("sbatch") is None:
        return "sinfo/sbatch not found on PATH"
    try:
        out = subprocess.run(["sinfo", "-h", "-N", "-o", "%N %t"], capture_output=True,
                             text=True, timeout=20)
    except subprocess.TimeoutExpired:
        return "sinfo did not answer within 20 s"
    if out.returncode != 0:
        return f"sinfo failed: {out.stderr.strip()}"
    if not re.search(r"^\S+ (idle|mix|alloc)$", out.stdout, re.M):
        return f"no Slurm node is up (sinfo: {out.stdout.strip() or 'no nodes'})"
    return None


@pytest.fixture(scope="module")
def slurm():
    require(slurm_missing(), f"{SETUP} (as root) to set up a single-node Slurm")


@pytest.fixture
def cluster(tmp_path, reaper):
    return ClusterDir(reaper.add_cluster_dir(tmp_path / "cluster")).create()


@pytest.fixture
def stopping():
    """Register things to stop (engine sets, controller jobs) after the test."""
    things = []
    yield things.append
    for thing in reversed(things):
        thing.stop(60)


def listed(job_id):
    out = subprocess.run(["squeue", "-h", "-j", str(job_id), "-o", "%i %T"],
                         capture_output=True, text=True, timeout=30)
    return out.stdout.strip()


def test_engines_run_in_the_job_array_and_stop_leaves_nothing(slurm, cluster, reaper, stopping):
    controller = ControllerLauncher(cluster, engine_furl=True)
    controller.start()
    reaper.add_pids(controller.pid)
    try:
        controller.wait_ready(60)
        engines = SlurmEngineSet(cluster, 2)
        stopping(engines)
        engines.start()
        assert engines.job_id and listed(engines.job_id)
        assert engines.poll() is None
        output = reaper.run_session(SESSION, cluster.furl_file(MULTIENGINE_FURL), 2,
                                    "SLURM_ARRAY_JOB_ID", ok="WORK SESSION OK", timeout=300)
        assert re.search(r"^env (.*)$", output, re.M).group(1).split() == [engines.job_id] * 2
        pids = [int(p) for p in re.search(r"^pids (.*)$", output, re.M).group(1).split()]
        [row] = engines.describe()
        assert row["job"] == engines.job_id and row["state"] == "RUNNING", row
        assert row["hosts"] == subprocess.check_output(["hostname", "-s"], text=True).strip()
        logs = sorted(p.name for p in cluster.log.glob(f"ipengine-{engines.job_id}-*.log"))
        assert logs == [f"ipengine-{engines.job_id}-1.log", f"ipengine-{engines.job_id}-2.log"]

        engines.stop(60)
        assert not listed(engines.job_id)
        assert reaper.all_gone(pids), f"engine processes {pids} outlived scancel"
        assert "ended" in engines.poll()
        engines.stop(10)   # again: nothing to do
        # A set rebuilt from its record stops (and describes) as well.
        again = SlurmEngineSet.from_record(cluster, engines.record())
        again.stop(10)
        assert again.describe()[0]["state"] == "CANCELLED"
    finally:
        controller.shutdown(30)


def test_rebuilt_set_cancels_the_job(slurm, cluster, stopping):
    # A user's template: ${VAR} and {} survive, the array directive is added.
    engines = SlurmEngineSet(cluster, 1, script="#!/bin/sh\n#SBATCH --job-name={job_name}\n"
                             "echo ${SLURM_ARRAY_TASK_ID} {} >/dev/null\nsleep 600\n")
    stopping(engines)
    engines.start()
    engines.save()
    from ipkernel.cluster.engineset import saved_sets
    [rebuilt] = saved_sets(cluster)
    assert rebuilt.job_id == engines.job_id and rebuilt.poll() is None
    rebuilt.stop(60)
    assert not listed(engines.job_id)
    engines.forget()


def test_controller_in_a_batch_job(slurm, cluster, reaper, stopping):
    job = BatchControllerJob.for_mode("slurm", cluster, ["--engine-ip", "0.0.0.0"])
    stopping(job)
    job.start()
    job.wait_ready(240)
    assert job.is_alive()
    assert job.log_file.name == f"ipcontroller-{job.job.job_id}.log"
    engines = SlurmEngineSet(cluster, 1)
    stopping(engines)
    engines.start()
    reaper.run_session(SESSION, cluster.furl_file(MULTIENGINE_FURL), 1, "SLURM_ARRAY_JOB_ID",
                       ok="WORK SESSION OK", timeout=300)
    engines.stop(60)
    job.shutdown(60)
    assert not listed(job.job.job_id) and not job.is_alive()


def test_a_refused_submission_quotes_sbatch(slurm, cluster):
    engines = SlurmEngineSet(cluster, 2, queue="nosuch")
    with pytest.raises(LaunchError) as caught:
        engines.start()
    message = str(caught.value)
    assert "sbatch --parsable" in message and "invalid partition" in message.lower(), message
    assert "'nosuch'" in message and engines.job_id is None
    engines.stop(5)   # nothing was submitted: nothing to do
