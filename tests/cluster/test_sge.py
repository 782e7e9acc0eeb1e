"""The Grid Engine launcher (:mod:`ipkernel.cluster.batch.sge`).

Tier 1: the job script (default and from a template) and the exact
``qsub``/``qstat``/``qdel`` command lines, answered with output captured
from a real Grid Engine (``fixtures/batch/sge_*``): job ids, task rows,
error states, records.  Tier 4: a real single-host Grid Engine
(``scripts/ci/sge.sh``): two engines as one job array register from the
job (``JOB_ID`` in their environment is the set's job id), do real work,
and ``stop`` leaves neither a listed job nor a process (also when stopped
from the record in another process); a submission to an unknown queue and
a task in error state are reported with Grid Engine's own words.

The blocking client must not run under the test's reactor, so the tier-4
engine scenarios run this file as a script (``python test_sge.py
SCENARIO CLUSTER_DIR``, see :func:`session`); it is not collected as a
test then.
"""
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ipkernel.cluster import engineset
from ipkernel.cluster.batch import sge
from ipkernel.cluster.batch.sge import SGEEngineSet
from ipkernel.cluster.launcher import LaunchError
from ipkernel.clusterdir import ClusterDir

from sessionkit import check, wait_registered

SETUP = "scripts/ci/sge.sh"
FIXTURES = Path(__file__).with_name("fixtures") / "batch"
ENGINE = "/env/bin/python -m ipkernel.engine"
SESSION_OK = "SGE SESSION OK"
TIMEOUT = 120.0


def fixture(name, cluster=None):
    text = (FIXTURES / name).read_text()
    return text.replace("@CLUSTER_DIR@", str(cluster.path)) if cluster is not None else text


class Scheduler:
    """A runner answering each command with captured output: ``answers``
    maps a program name to a list of ``(returncode, stdout, stderr)``, used
    in turn (the last one again once they run out); ``calls`` holds every
    argv."""

    def __init__(self, **answers):
        self.answers = answers
        self.calls = []

    def __call__(self, argv, timeout, stdin=None):
        self.calls.append(list(argv))
        assert timeout > 0 and stdin is None
        queue = self.answers[Path(argv[0]).name]
        return queue.pop(0) if len(queue) > 1 else queue[0]


def ok(name):
    return (0, fixture(name), "")


QSTAT = ["qstat", "-xml", "-g", "d", "-u", "*"]


# -- tier 1: captured Grid Engine output ------------------------------------------------

def test_default_script_and_commands(tmp_path):
    """Job 12 (captured): two tasks running, one queued; qdel; then the job is
    in deletion, then gone."""
    cd = ClusterDir(tmp_path / "c")
    answers = Scheduler(qsub=[ok("sge_qsub_terse.txt")],
                        qstat=[ok("sge_qstat.xml"), ok("sge_qstat.xml"),
                               ok("sge_qstat_deleting.xml"), ok("sge_qstat_empty.xml")],
                        qdel=[ok("sge_qdel.txt")],
                        qacct=[(1, "", "error: job id 12 not found\n")])
    s = SGEEngineSet(cd, 3, queue="short.q", engine_command=ENGINE,
                     engine_args=["--register-timeout", "120"], name="job1", runner=answers)
    assert s.script_text() == fixture("sge_job.sh", cd)
    s.start()
    script = cd.path / "jobs" / "job1.sh"
    assert s.job_id == "12" and s.script_file == script
    assert script.read_text() == fixture("sge_job.sh", cd)
    assert oct(script.stat().st_mode & 0o777) == "0o600"
    assert s.describe() == [{"job": "12", "hosts": "vm", "state": "qw/r"}]
    s.stop(timeout=5)
    assert answers.calls == [["qsub", "-terse", str(script)], QSTAT, QSTAT, ["qdel", "12"],
                             QSTAT, QSTAT]
    assert s.poll() == (f"Grid Engine job 12 is no longer listed by qstat: it ended "
                        f"(logs: {cd.log.absolute()}/ipengine-*)")


def test_rows_of_the_job_only(tmp_path):
    s = SGEEngineSet(tmp_path / "c", 3, name="j")
    listing = fixture("sge_qstat.xml")
    assert s.parse_listing(0, listing, "", "12") == [
        {"task": "12.1", "state": "r", "hosts": "vm", "reason": ""},
        {"task": "12.2", "state": "r", "hosts": "vm", "reason": ""},
        {"task": "12.3", "state": "qw", "hosts": "", "reason": ""}]
    assert [r["state"] for r in s.parse_listing(0, listing, "", "13")] == ["qw"] * 3
    assert s.parse_listing(0, listing, "", "14") == [
        {"task": "14", "state": "hqw", "hosts": "", "reason": ""}]
    assert s.parse_listing(0, listing, "", "1") == []     # not a prefix match
    assert [r["state"] for r in s.parse_listing(0, fixture("sge_qstat_deleting.xml"), "", "12")
            ] == ["dr", "dr"]
    assert s.parse_listing(0, fixture("sge_qstat_empty.xml"), "", "12") == []


def test_every_listed_state_is_active():
    for word in ("qw", "hqw", "r", "t", "dr", "dt", "Rr", "s", "S", "Eqw", "hRwq"):
        assert word in sge.ACTIVE, word
    for word in ("", "z", "done", "RUNNING"):
        assert word not in sge.ACTIVE, word


def test_job_ids_from_qsub():
    s = SGEEngineSet("/c", 2, name="j")
    assert s.parse_job_id(fixture("sge_qsub_terse.txt")) == "12"
    assert s.parse_job_id(fixture("sge_qsub_plain.txt")) == "13"
    assert s.parse_job_id("14\n") == "14"
    assert s.parse_job_id('Your job 15 ("broken") has been submitted\n') == "15"
    assert s.parse_job_id("") is None
    assert s.parse_job_id("Unable to run job\n") is None


def test_rejected_submission_quotes_qsub(tmp_path):
    err = fixture("sge_qsub_unknown_queue.err")
    answers = Scheduler(qsub=[(1, "", err)])
    s = SGEEngineSet(tmp_path / "c", 2, queue="nosuch.q", name="bad", runner=answers)
    with pytest.raises(LaunchError) as caught:
        s.start()
    message = str(caught.value)
    assert message.startswith(f"qsub -terse {s.script_file} failed: Unable to run job: "
                              f'Job was rejected because job requests unknown queue "nosuch.q"')
    assert "nosuch.q" in message.split("\n")[-1]     # and what to check
    assert caught.value.exit_code == 1 and s.job_id is None
    assert s.describe() == [{"job": "-", "hosts": "", "state": "not submitted"}]
    s.stop()     # nothing to stop, nothing run
    assert answers.calls == [["qsub", "-terse", str(s.script_file)]]


def test_a_template_keeps_its_own_directives(tmp_path):
    cd = ClusterDir(tmp_path / "c")
    template = tmp_path / "engines.sh"
    template.write_text(fixture("sge_template.sh"))
    s = SGEEngineSet(cd, 3, queue="short.q", script=template, engine_command=ENGINE,
                     engine_args=["--register-timeout", "120"], name="t")
    assert s.script_text() == fixture("sge_template_filled.sh", cd)
    # without its own -t and -q, they are added after the leading comments
    bare = SGEEngineSet(cd, 2, queue="long.q", script="#!/bin/sh\n#$ -l h_rt=1:00:00\n\n"
                        "{engine_command}\n", engine_command=ENGINE, name="b")
    lines = bare.script_text().splitlines()
    assert lines[:4] == ["#!/bin/sh", "#$ -l h_rt=1:00:00", "#$ -t 1-2", "#$ -q long.q"]


def test_error_state_is_reported_with_the_reason(tmp_path):
    """Job 15 (captured) could not open its output file: Eqw, with qstat -j's reason."""
    answers = Scheduler(qstat=[ok("sge_qstat_error.xml"), ok("sge_qstat_j_error.txt")])
    s = SGEEngineSet(tmp_path / "c", 1, name="e", runner=answers)
    s.job_id = "15"
    ended = s.poll()
    assert ended == ("Grid Engine job 15 cannot run: 15 Eqw: error: can't open output file "
                     '"/nonexistent/x/out": No such file or directory '
                     "(fix it, then qmod -cj 15, or stop the engines)")
    assert answers.calls == [QSTAT, ["qstat", "-j", "15"]]


def test_ended_job_adds_what_qacct_knows(tmp_path):
    answers = Scheduler(qstat=[ok("sge_qstat_empty.xml")], qacct=[ok("sge_qacct.txt")])
    s = SGEEngineSet(tmp_path / "c", 3, name="a", runner=answers)
    s.job_id = "12"
    ended = s.poll()
    assert ended.startswith("Grid Engine job 12 is no longer listed by qstat: it ended")
    assert ended.endswith("; qacct: task 1: exit status 137 (Killed), failed 100 : assumedly "
                          "after job; task 2: exit status 137 (Killed), failed 100 : assumedly "
                          "after job")
    assert answers.calls[-1] == ["qacct", "-j", "12"]


def test_qstat_failing_says_what_to_check(tmp_path):
    answers = Scheduler(qstat=[(1, "", "error: commlib error: got select error "
                                       "(Connection refused)\n")])
    s = SGEEngineSet(tmp_path / "c", 1, name="q", runner=answers)
    s.job_id = "7"
    with pytest.raises(LaunchError, match=r"qstat failed .*job 7: error: commlib error.*"
                                          r"is sge_qmaster up \(qhost\)\?"):
        s.poll()
    garbled = SGEEngineSet(tmp_path / "c", 1, name="g", runner=Scheduler(qstat=[(0, "<job", "")]))
    garbled.job_id = "7"
    with pytest.raises(LaunchError, match="not XML"):
        garbled.describe()


def test_record_round_trip(tmp_path):
    cd = ClusterDir(tmp_path / "c").create()
    s = SGEEngineSet(cd, 2, queue="all.q", name="rec")
    s.job_id, s.script_file = "31", cd.path / "jobs" / "rec.sh"
    s.save()
    [back] = engineset.saved_sets(cd)
    assert isinstance(back, SGEEngineSet) and engineset.engine_set_class("sge") is SGEEngineSet
    assert (back.name, back.n, back.job_id, back.queue) == ("rec", 2, "31", "all.q")
    back.forget()
    assert engineset.saved_sets(cd) == []


def test_controller_job_script(tmp_path):
    cd = ClusterDir(tmp_path / "c")
    s = SGEEngineSet(cd, 1, role="controller", engine_command=[sys.executable, "-m",
                                                               "ipkernel.controller"], name="ctl")
    text = s.script_text()
    assert "#$ -t" not in text and "#$ -N ipcontroller\n" in text
    assert f"#$ -o {cd.log.absolute()}/sge-ipcontroller-$JOB_ID.out\n" in text
    assert text.rstrip().endswith(f'--logfile {cd.log.absolute()}/"ipcontroller-${{JOB_ID}}.log"')


# -- tier 4: a real Grid Engine ----------------------------------------------------------

def _missing():
    """Why no usable Grid Engine queue is here (None if there is one)."""
    if shutil.which("qstat") is None:
        return "qstat is not on PATH (no Grid Engine here)"
    try:
        done = subprocess.run(["qstat", "-f"], capture_output=True, text=True, timeout=20,
                              stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        return "qstat -f did not answer within 20 s"
    if done.returncode != 0:
        return f"qstat -f failed: {(done.stderr or done.stdout).strip()[:200]}"
    # queuename qtype resv/used/tot. load_avg arch [states]
    usable = [line for line in done.stdout.splitlines()
              if "@" in line.split(" ", 1)[0] and len(line.split()) == 5]
    if not usable:
        return "qstat -f shows no usable queue instance"
    return None


@pytest.fixture
def sge_ready():
    from tier4 import require   # (not at the top: this file also runs as a script)
    require(_missing(), f"{SETUP} (as root)")


def listed(job_id):
    """Whether the real qstat lists job ``job_id``."""
    done = subprocess.run(QSTAT, capture_output=True, text=True, timeout=30, check=True)
    return re.search(rf"<JB_job_number>{job_id}</JB_job_number>", done.stdout) is not None


def job_processes(job_id):
    """The pids of the processes whose environment has ``JOB_ID=job_id``."""
    wanted = f"JOB_ID={job_id}".encode()
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/environ", "rb") as f:
                if wanted in f.read().split(b"\0"):
                    found.append(int(entry))
        except OSError:
            continue
    return found


def running(state):
    """Whether a status row's state says the tasks run (Grid Engine may still
    show ``t``, transferring, for tasks whose engines already registered, also
    for all of them)."""
    return bool(state) and set(state.split("/")) <= {"r", "t"}


def values(output, label):
    return re.search(rf"^{label} (.*)$", output, re.M).group(1).split()


@pytest.mark.tier4
@pytest.mark.timeout(300)
def test_engines_register_from_the_job_and_stop_leaves_nothing(sge_ready, cluster_dir, reaper):
    output = reaper.run_session(__file__, "work", cluster_dir.path, ok=SESSION_OK, timeout=260)
    [job] = values(output, "job")
    pids = [int(p) for p in values(output, "pids")]
    assert len(pids) == 2
    assert reaper.all_gone(pids, timeout=10), f"engines left running: {pids}"
    assert not listed(job), f"qstat still lists job {job}"
    assert job_processes(job) == []
    assert engineset.saved_sets(cluster_dir) == []
    logs = sorted(p.name for p in cluster_dir.log.glob(f"ipengine-{job}-*.log"))
    assert logs == [f"ipengine-{job}-1.log", f"ipengine-{job}-2.log"]


@pytest.mark.tier4
@pytest.mark.timeout(300)
def test_stop_from_the_record(sge_ready, cluster_dir, reaper):
    """``ipcluster stop`` in another process: the set rebuilt from its record
    deletes the job and its engines."""
    output = reaper.run_session(__file__, "leave", cluster_dir.path, os.getpid(),
                                ok=SESSION_OK, timeout=260)
    reaper.add_pids(*map(int, values(output, "controller")))
    [job] = values(output, "job")
    pids = [int(p) for p in values(output, "pids")]
    reaper.add_pids(*pids)
    [back] = engineset.saved_sets(cluster_dir)
    assert isinstance(back, SGEEngineSet) and back.job_id == job
    assert running(back.describe()[0]["state"]) and back.poll() is None
    back.stop(timeout=60)
    assert not listed(job)
    assert reaper.all_gone(pids, timeout=10), f"engines left running: {pids}"
    assert job_processes(job) == []
    assert "no longer listed" in back.poll()
    back.forget()
    back.stop()   # again: nothing to do


@pytest.mark.tier4
@pytest.mark.timeout(120)
def test_unknown_queue_is_refused_by_qsub(sge_ready, cluster_dir):
    s = SGEEngineSet(cluster_dir, 1, queue="nosuch.q", name="unknown-queue")
    with pytest.raises(LaunchError) as caught:
        s.start()
    message = str(caught.value)
    assert message.startswith(f"qsub -terse {s.script_file} failed: ")
    assert 'unknown queue "nosuch.q"' in message
    assert s.job_id is None and s.poll() is None


@pytest.mark.tier4
@pytest.mark.timeout(120)
def test_task_in_error_state_is_reported(sge_ready, cluster_dir):
    """A task whose output file cannot be opened: Grid Engine keeps it in Eqw,
    poll() says why, stop() deletes it."""
    template = ("#!/bin/sh\n#$ -S /bin/sh\n#$ -o /nonexistent-ipkernel-sge/out\n"
                "{engine_command}\n")
    s = SGEEngineSet(cluster_dir, 1, script=template, name="error-state")
    s.save()    # (the cluster_dir fixture deletes the job if the test fails)
    s.start()
    deadline = time.monotonic() + 90
    while (ended := s.poll()) is None:
        assert time.monotonic() < deadline, f"job {s.job_id}: {s.describe()}"
        time.sleep(0.2)
    assert ended.startswith(f"Grid Engine job {s.job_id} cannot run: {s.job_id}.1 Eqw: ")
    assert "/nonexistent-ipkernel-sge/out" in ended
    s.stop(timeout=60)
    assert not listed(s.job_id)
    s.forget()


# -- the session (run as a script: python test_sge.py SCENARIO CLUSTER_DIR ...) -----------

def session(scenario, path, parent_pid=None):
    """``work``: a controller, two engines as a job array; each engine's
    ``JOB_ID`` is the set's job id and ``SGE_TASK_ID`` its index; real work;
    ``stop`` deletes the job, its engines unregister.  ``leave``: the same
    up to the work, then the session exits leaving the job and its record
    (the controller lives until process PARENT_PID exits)."""
    from ipkernel.client import MultiEngineClient
    from ipkernel.cluster.launcher import ControllerLauncher
    from ipkernel.clusterdir import MULTIENGINE_FURL

    cluster = ClusterDir(path).create()
    controller = ControllerLauncher(cluster, parent_pid=parent_pid, engine_furl=True)
    controller.start()
    print("controller", controller.pid, flush=True)
    controller.wait_ready(TIMEOUT)
    # left behind, the engines must outlive the controller until they are deleted
    keep = ["--stop-wait", "600", "--reconnect-timeout", "600"] if scenario == "leave" else []
    engine_set = SGEEngineSet(cluster, 2, engine_args=keep, name=f"session-{scenario}")
    engine_set.save()
    engine_set.start()
    engine_set.save()
    print("job", engine_set.job_id, flush=True)
    mec = MultiEngineClient(str(cluster.furl_file(MULTIENGINE_FURL)), timeout=60,
                            progress=False)
    try:
        ids = wait_registered(mec, engine_set, 2, TIMEOUT)
        mec.execute("import os\njob = os.environ.get('JOB_ID')\n"
                    "task = os.environ.get('SGE_TASK_ID')\npid = os.getpid()", targets=ids)
        jobs, tasks = mec.pull("job", targets=ids), mec.pull("task", targets=ids)
        check(jobs == [engine_set.job_id] * 2, f"JOB_ID of the engines: {jobs}")
        check(sorted(tasks) == ["1", "2"], f"SGE_TASK_ID of the engines: {tasks}")
        pids = mec.pull("pid", targets=ids)
        mec.push({"base": 1000}, targets=ids)
        mec.execute("part = sum(i * i for i in range(base * int(task)))", targets=ids)
        parts = dict(zip(tasks, mec.pull("part", targets=ids)))
        check(parts == {t: sum(i * i for i in range(1000 * int(t))) for t in ("1", "2")},
               f"work done in the job: {parts}")
        rows = engine_set.describe()
        check(rows[0]["job"] == engine_set.job_id and running(rows[0]["state"])
               and rows[0]["hosts"], f"status row: {rows}")
        print("pids", *pids, flush=True)
        if scenario == "leave":
            print(SESSION_OK)
            return
        engine_set.stop(timeout=60)
        check(engine_set.rows() == [], f"still listed: {engine_set.rows()}")
        check("no longer listed" in (engine_set.poll() or ""), engine_set.poll())
        engine_set.stop()   # again: nothing to do
        engine_set.forget()
        deadline = time.monotonic() + TIMEOUT
        while mec.get_ids():
            check(time.monotonic() < deadline, f"engines {mec.get_ids()} still registered")
            time.sleep(0.2)
        print(SESSION_OK)
    finally:
        mec.close()
        if scenario != "leave":
            engine_set.stop()
            controller.shutdown()


if __name__ == "__main__":
    session(sys.argv[1], sys.argv[2], *map(int, sys.argv[3:]))
