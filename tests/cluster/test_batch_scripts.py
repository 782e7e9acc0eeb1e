"""Tier 1: the batch launchers' job scripts, exact command lines and parsers.

Slurm, PBS and LSF are driven through a recording ``runner`` (the argv and
stdin each command would get, answered with text in the formats those
commands print: ``tests/cluster/fixtures/batch``).  The Slurm fixtures were
captured from the real Slurm of ``scripts/ci/slurm.sh``; PBS and LSF are not
installable here, so theirs follow the formats of those schedulers'
documentation and the launchers say they are not verified live.
"""
import os
import stat
import subprocess
from pathlib import Path

import pytest

from ipkernel.cluster.batch import base
from ipkernel.cluster.batch.base import BatchControllerJob, fill_template, insert_directives
from ipkernel.cluster.batch.lsf import LSFEngineSet
from ipkernel.cluster.batch.pbs import PBSEngineSet
from ipkernel.cluster.batch.slurm import SlurmEngineSet
from ipkernel.cluster.launcher import LaunchError

pytestmark = pytest.mark.tier1

FIXTURES = Path(__file__).with_name("fixtures") / "batch"
SHARED = "/shared/ipk/cluster"
ENGINE = ["/opt/ipk/bin/python", "-m", "ipkernel.engine"]


def fixture(name):
    return (FIXTURES / name).read_text()


class Runner:
    """Records each command; answers from ``answers``: program -> list of
    (returncode, stdout, stderr), used in turn (the last one repeats)."""

    def __init__(self, **answers):
        self.answers = answers
        self.calls = []

    def __call__(self, argv, timeout, stdin=None):
        assert timeout > 0
        self.calls.append((list(argv), stdin))
        queue = self.answers[argv[0]]
        return queue.pop(0) if len(queue) > 1 else queue[0]

    def argvs(self, program=None):
        return [argv for argv, _ in self.calls if program in (None, argv[0])]


def engines(cls, n=4, **kw):
    return cls(SHARED, n, engine_command=ENGINE, engine_args=["--log-level", "info"],
               name="fixture", **kw)


# -- templates -------------------------------------------------------------------------------

def test_only_our_placeholders_are_replaced():
    text = fill_template('echo ${HOME} {} {n} "${A:-{x}}" {{job_name}} {job_name}\n'
                         'awk "{ print }"\n', {"n": 3, "job_name": "ipengine", "x": "?"})
    assert text == 'echo ${HOME} {} 3 "${A:-?}" {job_name} ipengine\nawk "{ print }"\n'


def test_an_unknown_placeholder_is_named():
    with pytest.raises(ValueError, match=r"unknown placeholder \{nodes\}.*\{\{nodes\}\}"):
        engines(SlurmEngineSet, script="#!/bin/sh\n#SBATCH -N {nodes}\n{engine_command}\n"
                ).script_text()


def test_directives_go_after_the_leading_comment_block():
    script = "#!/bin/bash\n#SBATCH --time=5\n\n# a note\necho hi\n# not here\n"
    assert insert_directives(script, ["#SBATCH --array=1-2"]) == (
        "#!/bin/bash\n#SBATCH --time=5\n\n# a note\n#SBATCH --array=1-2\necho hi\n# not here\n")
    assert insert_directives("#!/bin/sh", ["#X"]) == "#!/bin/sh\n#X\n"


@pytest.mark.parametrize("mode, cls", [("slurm", SlurmEngineSet), ("pbs", PBSEngineSet),
                                       ("lsf", LSFEngineSet)])
def test_default_scripts(mode, cls):
    assert engines(cls, queue="short").script_text() == fixture(f"{mode}_expected.sh")
    job = cls(SHARED, 1, role="controller", name="c",
              engine_command=["/opt/ipk/bin/python", "-m", "ipkernel.controller"],
              engine_args=["--engine-ip", "0.0.0.0"])
    assert job.script_text() == fixture(f"{mode}_controller_expected.sh")


def test_a_template_with_its_own_array_and_queue_gets_none_added(tmp_path):
    template = tmp_path / "job.sh"
    template.write_text("#!/bin/sh\n#SBATCH -a 1-{n}%2\n#SBATCH -p {queue}\n"
                        "srun {engine_command}\n")
    text = engines(SlurmEngineSet, script=str(template), queue="gpu").script_text()
    assert text.count("--array") == 0 and text.count("#SBATCH") == 2
    assert text.startswith("#!/bin/sh\n#SBATCH -a 1-4%2\n#SBATCH -p gpu\nsrun /opt/ipk/bin/python")


def test_a_missing_template_file_is_named(tmp_path):
    with pytest.raises(ValueError, match=r"cannot read the job script template .*nope\.sh"):
        engines(SlurmEngineSet, script=str(tmp_path / "nope.sh"))


def test_lsf_template_naming_the_job_without_a_range():
    with pytest.raises(ValueError, match=r"#BSUB -J name\[1-\{n\}\]"):
        engines(LSFEngineSet, script="#!/bin/sh\n#BSUB -J mine\n{engine_command}\n").script_text()


@pytest.mark.parametrize("cls, env, log", [
    (SlurmEngineSet, {"SLURM_ARRAY_JOB_ID": "1234", "SLURM_ARRAY_TASK_ID": "2"},
     "ipengine-1234-2.log"),
    (PBSEngineSet, {"PBS_JOBID": "4321[2].pbs-head.example.org", "PBS_ARRAYID": "2"},
     "ipengine-4321[2]-2.log"),
    (PBSEngineSet, {"PBS_JOBID": "4321[2].pbs-pro", "PBS_ARRAY_INDEX": "2"},
     "ipengine-4321[2]-2.log"),
    (LSFEngineSet, {"LSB_JOBID": "5678", "LSB_JOBINDEX": "2"}, "ipengine-5678-2.log")])
def test_the_task_shell_names_each_engine_log(cls, env, log):
    """The real /bin/sh expands the job's variables in {engine_command}."""
    line = cls(SHARED, 2, engine_command=["echo"], name="x").command_line()
    out = subprocess.run(["/bin/sh", "-c", line], capture_output=True, text=True, timeout=30,
                         env={"PATH": os.environ["PATH"], **env}, check=True).stdout
    assert out.split() == ["--cluster-dir", SHARED, "--logfile", f"{SHARED}/log/{log}"]


# -- submitting ------------------------------------------------------------------------------

@pytest.mark.parametrize("cls, answer, argv, job_id, stdin", [
    (SlurmEngineSet, "slurm_sbatch_parsable.txt", ["sbatch", "--parsable", "SCRIPT"], "1234",
     False),
    (SlurmEngineSet, "slurm_sbatch_parsable_cluster.txt", ["sbatch", "--parsable", "SCRIPT"],
     "1235", False),
    (PBSEngineSet, "pbs_qsub.txt", ["qsub", "SCRIPT"], "4321[].pbs-head.example.org", False),
    (LSFEngineSet, "lsf_bsub.txt", ["bsub"], "5678", True)])
def test_submit_command_and_job_id(tmp_path, cls, answer, argv, job_id, stdin):
    program = argv[0]
    runner = Runner(**{program: [(0, fixture(answer), "")]})
    es = cls(tmp_path / "c", 2, runner=runner, name="s").start()
    assert es.job_id == job_id
    [(called, given)] = runner.calls
    assert called == [str(es.script_file) if a == "SCRIPT" else a for a in argv]
    assert stat.S_IMODE(es.script_file.stat().st_mode) == 0o600
    assert given == (es.script_file.read_text() if stdin else None)
    assert es.state()["job_id"] == job_id
    with pytest.raises(RuntimeError, match="started already"):
        es.start()


@pytest.mark.parametrize("cls, program, err", [
    (SlurmEngineSet, "sbatch", "slurm_sbatch_invalid_partition.err"),
    (PBSEngineSet, "qsub", "pbs_qsub_unknown_queue.err"),
    (LSFEngineSet, "bsub", "lsf_bsub_unknown_queue.err")])
def test_a_refused_submission_quotes_the_scheduler(tmp_path, cls, program, err):
    runner = Runner(**{program: [(1, "", fixture(err))]})
    es = cls(tmp_path / "c", 2, runner=runner, queue="nosuch")
    with pytest.raises(LaunchError) as caught:
        es.start()
    assert fixture(err).strip() in str(caught.value)
    assert "'nosuch'" in str(caught.value) and caught.value.exit_code == 1
    assert es.job_id is None


def test_a_missing_program_says_what_to_do():
    with pytest.raises(LaunchError, match=r"no-such-sbatch-1 not found on PATH: is Slurm "
                                          r"installed here\?"):
        base.run_command(["no-such-sbatch-1"], scheduler="Slurm")


def test_a_command_that_does_not_answer_is_cut_off():
    with pytest.raises(LaunchError, match=r"sleep 30 did not answer within 0.2 s: is the "
                                          r"Slurm controller up"):
        base.run_command(["sleep", "30"], 0.2, scheduler="Slurm")


# -- listing, poll, describe, stop -----------------------------------------------------------

def started(cls, job_id, **answers):
    es = engines(cls, runner=Runner(**answers))
    es.job_id = job_id
    return es


@pytest.mark.parametrize("cls, job_id, program, active, ended, hosts", [
    (SlurmEngineSet, "1234", "squeue", "slurm_squeue_running.txt",
     "slurm_squeue_cancelled.txt", "vm"),
    (PBSEngineSet, "4321[].pbs-head.example.org", "qstat", "pbs_qstat_f_t.txt",
     "pbs_qstat_f_t_completed.txt", "node07,node08"),
    (LSFEngineSet, "5678", "bjobs", "lsf_bjobs.txt", "lsf_bjobs_ended.txt",
     "hostA,hostB,hostC")])
def test_poll_and_describe(cls, job_id, program, active, ended, hosts):
    es = started(cls, job_id, **{program: [(0, fixture(active), ""), (0, fixture(ended), "")]})
    assert es.poll() is None
    assert es.runner.argvs()[0] == es.list_argv(job_id) and job_id in es.list_argv(job_id)
    reason = es.poll()
    assert reason.startswith(f"{es.scheduler} job {job_id} ended: ") and "logs:" in reason
    assert len(es.rows()) == 3
    [row] = es.describe()
    assert row["job"] == job_id and row["hosts"] == hosts


def test_parsed_rows():
    es = started(SlurmEngineSet, "1236", squeue=[(0, fixture("slurm_squeue_pending.txt"), "")])
    held = {"state": "PENDING", "hosts": "", "reason": "JobHeldUser"}
    assert es.rows() == [{"task": "1236_1", **held}, {"task": "1236_2", **held}]
    assert es.describe() == [{"job": "1236", "hosts": "", "state": "PENDING"}]
    pbs = started(PBSEngineSet, "4321[].pbs-head.example.org",
                  qstat=[(0, fixture("pbs_qstat_f_t.txt"), "")])
    assert [(r["task"], r["state"]) for r in pbs.rows()] == [
        ("4321[1].pbs-head.example.org", "R"), ("4321[2].pbs-head.example.org", "R"),
        ("4321[3].pbs-head.example.org", "Q")]
    assert pbs.rows()[2]["reason"].startswith("Not Running: Insufficient")
    lsf = started(LSFEngineSet, "5678", bjobs=[(0, fixture("lsf_bjobs.txt"), "")])
    assert [(r["task"], r["state"], r["hosts"]) for r in lsf.rows()] == [
        ("5678[1]", "RUN", "hostA"), ("5678[2]", "RUN", "hostB,hostC"), ("5678[3]", "PEND", "")]


@pytest.mark.parametrize("cls, job_id, program, err", [
    (SlurmEngineSet, "1234", "squeue", "slurm_squeue_invalid.err"),
    (PBSEngineSet, "4321[].pbs-head.example.org", "qstat", "pbs_qstat_unknown.err"),
    (LSFEngineSet, "5678", "bjobs", "lsf_bjobs_not_found.err")])
def test_a_job_no_longer_listed_has_ended(cls, job_id, program, err):
    es = started(cls, job_id, **{program: [(1 if program != "bjobs" else 255, "", fixture(err))]})
    assert es.rows() == []
    assert "is no longer listed" in es.poll()
    assert es.describe() == [{"job": job_id, "hosts": "", "state": "ended"}]
    es.stop(1)
    assert not es.runner.argvs(es.cancel_program)   # nothing left to cancel


def test_a_failing_listing_is_an_error():
    es = started(SlurmEngineSet, "1234", squeue=[(1, "", "slurm_load_jobs error: Unable to "
                                                      "contact slurm controller\n")])
    with pytest.raises(LaunchError, match=r"squeue failed for job 1234: slurm_load_jobs error: "
                                          r"Unable to contact slurm controller; is slurmctld up"):
        es.poll()


@pytest.mark.parametrize("cls, job_id, program, active, cancel", [
    (SlurmEngineSet, "1234", "squeue", "slurm_squeue_running.txt", ["scancel", "1234"]),
    (PBSEngineSet, "4321[].pbs-head.example.org", "qstat", "pbs_qstat_f_t.txt",
     ["qdel", "4321[].pbs-head.example.org"]),
    (LSFEngineSet, "5678", "bjobs", "lsf_bjobs.txt", ["bkill", "5678"])])
def test_stop_cancels_then_waits_until_not_listed(monkeypatch, cls, job_id, program, active,
                                                  cancel):
    monkeypatch.setattr(base, "POLL_INTERVAL", 0.01)
    listing = [(0, fixture(active), "")] * 3 + [(0, "", "")]
    es = started(cls, job_id, **{program: listing, cancel[0]: [(0, "", "")]})
    es.stop(10)
    assert es.runner.argvs() == [es.list_argv(job_id), cancel, es.list_argv(job_id),
                                 es.list_argv(job_id), es.list_argv(job_id)]
    # Rebuilt from its record, the set knows the job and stops it again (nothing listed).
    again = cls.from_record(SHARED, es.record())
    again.runner = Runner(**{program: [(0, "", "")]})
    assert (again.job_id, again.n, again.name) == (job_id, 4, "fixture")
    again.stop(1)
    assert again.runner.argvs() == [again.list_argv(job_id)]


def test_stop_gives_up_after_its_timeout(monkeypatch):
    monkeypatch.setattr(base, "POLL_INTERVAL", 0.01)
    es = started(SlurmEngineSet, "1234", squeue=[(0, fixture("slurm_squeue_running.txt"), "")],
                 scancel=[(0, "", "")])
    with pytest.raises(LaunchError, match=r"Slurm job 1234 still listed 0.2 s after scancel: "
                                          r"1234_3 RUNNING.*cancel it by hand \(scancel 1234\)"):
        es.stop(0.2)


def test_controller_job_is_ready_when_fresh_furls_appear(tmp_path, monkeypatch):
    monkeypatch.setattr(base, "POLL_INTERVAL", 0.01)
    running = (0, "77|RUNNING|vm|None\n", "")
    runner = Runner(sbatch=[(0, "77\n", "")], squeue=[running])
    job = BatchControllerJob.for_mode("slurm", tmp_path / "c", ["--engine-ip", "0.0.0.0"],
                                      runner=runner).start()
    assert job.log_file == tmp_path / "c" / "log" / "ipcontroller-77.log"
    assert "--array" not in job.job.script_file.read_text()
    with pytest.raises(LaunchError, match=r"no FURL files in .* after 0.1 s \(RUNNING"):
        job.wait_ready(0.1)
    for name in ("ipcontroller-mec.furl", "ipcontroller-engine.furl"):
        job.cluster.furl_file(name).write_text("pb://x")
    assert job.wait_ready(5) is job and job.is_alive()
    runner.answers["squeue"] = [(0, "77|FAILED|vm|NonZeroExitCode\n", "")]
    assert not job.is_alive()
