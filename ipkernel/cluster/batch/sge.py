"""Grid Engine (SGE, Son of Grid Engine, OGS): engines as a job array.

Submits with ``qsub -terse`` (it prints ``12.1-4:1`` for an array, ``12``
for one task: the job id is the number before the dot), lists with
``qstat -xml -g d -u *`` (one ``job_list`` per array task, queued ones
included; a job that ended is no longer listed) and cancels with ``qdel``.
In each task ``JOB_ID`` is the id ``qsub`` printed and ``SGE_TASK_ID`` the
index (1..n), so engine ``i`` logs to ``{log_dir}/ipengine-<job id>-<i>.log``;
Grid Engine's own output of a task (stdout and stderr joined) goes to
``{log_dir}/sge-ipengine-<job id>.<i>.out``.

The default script asks for ``/bin/sh`` (``-S``: without it the queue's
shell is used, whatever the first line says), the submitting environment
(``-V``: the engine finds the same ``PATH``, virtualenv and
``PYTHONPATH``, as under Slurm) and the submitting directory (``-cwd``;
Grid Engine would start in ``$HOME``).

Every state ``qstat`` shows counts as active (queued, held, running,
suspended, being deleted); a task in error (``Eqw``: Grid Engine will not
run it until the error is cleared) makes :meth:`SGEEngineSet.poll` report
the error reason ``qstat -j`` gives, and ``stop`` deletes it like any other.
Once the job is gone, ``poll`` adds what ``qacct`` knows of its tasks (exit
status, failure) when accounting is on.  Tested against a real Grid Engine
(``scripts/ci/sge.sh``).
"""
import re
import xml.etree.ElementTree as ElementTree

from ipkernel.cluster.batch.base import BatchEngineSet
from ipkernel.cluster.launcher import LaunchError

#: The letters of Grid Engine's job states (``z``, finished, is never listed
#: by the plain ``qstat``).
STATE_LETTERS = frozenset("dEhrRsStTqw")
#: ``qsub`` without ``-terse``: "Your job 12 (...)" or "Your job-array 12.1-4:1 (...)".
_SUBMITTED = re.compile(r"Your job(?:-array)? (\d+)")
#: ``qstat -j``: "error reason    1:      12/02/2026 20:50:34 [0:24860]: error: ...".
_ERROR_REASON = re.compile(r"^error reason\s+\d+:\s+(?:\S+ \S+ \[[^\]]*\]:\s*)?(.*)$", re.M)


class ListedStates:
    """Every job state ``qstat`` lists is active: ``state in ACTIVE`` is
    true for any word made of Grid Engine's state letters (``qw``, ``hqw``,
    ``r``, ``dr``, ``Eqw``, ``Rr`` ...)."""

    def __contains__(self, word):
        return bool(word) and set(word) <= STATE_LETTERS

    def __repr__(self):
        return f"<any state of {''.join(sorted(STATE_LETTERS))}>"


#: The active states (see :class:`ListedStates`).
ACTIVE = ListedStates()


def host_of(queue_instance):
    """The host of a queue instance name (``all.q@node1`` -> ``node1``)."""
    return queue_instance.rpartition("@")[2] if "@" in queue_instance else ""


class SGEEngineSet(BatchEngineSet):
    """``n`` engines as a Grid Engine job array (see :class:`~ipkernel.cluster.batch.base.BatchEngineSet`)."""

    mode = "sge"
    scheduler = "Grid Engine"
    submit_program, list_program, cancel_program = "qsub", "qstat", "qdel"
    prefix = "#$"
    array_directive = "#$ -t 1-{n}"
    queue_directive = "#$ -q {queue}"
    array_regex = r"^#\$\s+-t\s"
    queue_regex = r"^#\$\s+-q\s"
    job_id_env, index_env = "JOB_ID", "SGE_TASK_ID"
    single_job_id_env = "JOB_ID"
    active_states = ACTIVE

    @property
    def extra_directives(self):
        # $JOB_ID and $TASK_ID here are qsub's own pseudo variables of -o
        out = "ipengine-$JOB_ID.$TASK_ID" if self.role == "engine" else "ipcontroller-$JOB_ID"
        return ("-N {job_name}", "-S /bin/sh", "-V", "-cwd", "-j y",
                f"-o {{log_dir}}/sge-{out}.out")

    def submit_argv(self, script_path):
        return ["qsub", "-terse", str(script_path)]

    def parse_job_id(self, stdout):
        text = stdout.strip()
        found = _SUBMITTED.search(text)
        if found:
            return found.group(1)
        last = text.splitlines()[-1].strip() if text else ""
        job = last.split(".")[0]
        return job if job.isdigit() else None

    def list_argv(self, job_id):
        return ["qstat", "-xml", "-g", "d", "-u", "*"]

    def parse_listing(self, returncode, stdout, stderr, job_id):
        if returncode != 0:
            raise LaunchError(f"qstat failed while looking for job {job_id}: "
                              f"{(stderr or stdout).strip() or f'exit status {returncode}'}; "
                              f"is sge_qmaster up (qhost)?", exit_code=returncode)
        try:
            root = ElementTree.fromstring(stdout)
        except ElementTree.ParseError as exc:
            raise LaunchError(f"qstat -xml gave output that is not XML ({exc}): "
                              f"{stdout.strip()[:200]!r}") from None
        rows = []
        for job in root.iter("job_list"):
            if (job.findtext("JB_job_number") or "").strip() != str(job_id):
                continue
            task = (job.findtext("tasks") or "").strip()
            rows.append({"task": f"{job_id}.{task}" if task else str(job_id),
                         "state": (job.findtext("state") or "").strip(),
                         "hosts": host_of((job.findtext("queue_name") or "").strip()),
                         "reason": ""})
        return rows

    def cancel_argv(self, job_id):
        return ["qdel", str(job_id)]

    # -- what went wrong ----------------------------------------------------------------

    def error_reasons(self):
        """The ``error reason`` lines ``qstat -j`` gives for the job (text)."""
        code, out, err = self._run(["qstat", "-j", str(self.job_id)])
        if code != 0:
            return ""
        return "; ".join(dict.fromkeys(m.strip() for m in _ERROR_REASON.findall(out)))

    def accounting(self):
        """What ``qacct -j`` says of the job's tasks (text; '' if it knows nothing)."""
        try:
            code, out, _ = self._run(["qacct", "-j", str(self.job_id)])
        except LaunchError:
            return ""
        if code != 0:
            return ""
        tasks, current = [], {}
        for line in out.splitlines():
            key, _, value = line.partition(" ")
            if key in ("taskid", "exit_status", "failed"):
                current[key] = " ".join(value.split())
            if key == "exit_status":
                tasks.append(current)
                current = {}
        parts = []
        for t in tasks:
            failed = t.get("failed", "0")
            parts.append(f"task {t.get('taskid', '?')}: exit status {t.get('exit_status', '?')}"
                         + ("" if failed.startswith("0") else f", failed {failed}"))
        return "; ".join(parts)

    def poll(self):
        if self.job_id is None:
            return None
        rows = self.rows()
        broken = [r for r in rows if "E" in r["state"]]
        if broken:
            tasks = ", ".join(f"{r['task']} {r['state']}" for r in broken)
            why = self.error_reasons() or "qstat -j gives no reason"
            return (f"{self.scheduler} job {self.job_id} cannot run: {tasks}: {why} (fix it, "
                    f"then qmod -cj {self.job_id}, or stop the engines)")
        if rows:
            return None
        ended = super().poll()
        if ended is None:   # listed again in between: still there
            return None
        known = self.accounting()
        return f"{ended}; qacct: {known}" if known else ended
