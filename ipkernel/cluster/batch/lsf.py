"""LSF: engines as a job array submitted with ``bsub``.

**Not verified against a live scheduler**: LSF cannot be installed on the
machine this was written on; the script and the exact command lines are
tested against captured output formats (``tests/cluster/fixtures/batch``).

The script goes to ``bsub``'s stdin (``bsub < script``: only then does bsub
read the ``#BSUB`` lines).  The array is the job name's index range,
``#BSUB -J ipengine[1-{n}]``; a template naming the job without a range is
an error (two ``-J`` lines would fight).  ``bsub`` prints
``Job <123> is submitted to queue <normal>.``; ``bjobs -a -noheader -o``
lists the tasks (finished ones too, while LSF remembers them) and ``bkill``
cancels the whole array.  In a task ``LSB_JOBID`` is the job id and
``LSB_JOBINDEX`` the index, so engine ``i`` logs to
``{log_dir}/ipengine-<job id>-<i>.log``.
"""
import re

from ipkernel.cluster.batch.base import BatchEngineSet
from ipkernel.cluster.launcher import LaunchError

#: bjobs's fields, ``|`` between them.
BJOBS_FORMAT = "jobid jobindex stat exec_host pend_reason delimiter='|'"
#: bjobs STAT words of a job that is queued, running or suspended.
ACTIVE = frozenset({"PEND", "RUN", "PSUSP", "USUSP", "SSUSP", "WAIT", "PROV", "UNKWN"})


class LSFEngineSet(BatchEngineSet):
    """``n`` engines as an LSF job array (see :class:`~ipkernel.cluster.batch.base.BatchEngineSet`)."""

    mode = "lsf"
    scheduler = "LSF"
    submit_program, list_program, cancel_program = "bsub", "bjobs", "bkill"
    prefix = "#BSUB"
    array_directive = "#BSUB -J {job_name}[1-{n}]"
    queue_directive = "#BSUB -q {queue}"
    array_regex = r"^#BSUB\s+-J\s+\S*\[\d"
    queue_regex = r"^#BSUB\s+-q\b"
    job_id_env, index_env = "LSB_JOBID", "LSB_JOBINDEX"
    single_job_id_env = "LSB_JOBID"
    active_states = ACTIVE

    @property
    def extra_directives(self):
        if self.role == "controller":
            return ("-J {job_name}", "-o {log_dir}/lsf-%J.out")
        return ("-o {log_dir}/lsf-%J_%I.out",)

    def script_text(self):
        text = super().script_text()
        if self.role == "engine" and len(re.findall(r"^#BSUB\s+-J\b", text, re.M)) > 1:
            raise ValueError("the job script template names the job (#BSUB -J) without an "
                             "index range: write #BSUB -J name[1-{n}] (or leave -J out)")
        return text

    def submit_argv(self, script_path):
        return ["bsub"]

    def submit_input(self, script_path):
        with open(script_path, encoding="utf-8") as f:
            return f.read()

    def parse_job_id(self, stdout):
        found = re.search(r"Job <(\d+)> is submitted", stdout)
        return found.group(1) if found else None

    def list_argv(self, job_id):
        return ["bjobs", "-a", "-noheader", "-o", BJOBS_FORMAT, str(job_id)]

    def parse_listing(self, returncode, stdout, stderr, job_id):
        if "is not found" in stderr or "is not found" in stdout:
            return []
        if returncode != 0:
            raise LaunchError(f"bjobs failed for job {job_id}: "
                              f"{stderr.strip() or f'exit status {returncode}'}; "
                              f"is LSF up (lsid)?", exit_code=returncode)
        rows = []
        for line in stdout.splitlines():
            fields = [f.strip() for f in line.split("|")]
            if len(fields) != 5 or fields[0] != str(job_id):
                continue
            jobid, index, stat, hosts, reason = fields
            hosts = "" if hosts == "-" else ",".join(sorted(
                {h.split("*")[-1] for h in hosts.replace(":", " ").split()}))
            rows.append({"task": f"{jobid}[{index}]", "state": stat, "hosts": hosts,
                         "reason": "" if reason == "-" else reason})
        return rows
