"""PBS/Torque: engines as a job array submitted with ``qsub``.

**Not verified against a live scheduler**: PBS cannot be installed on the
machine this was written on; the script and the exact command lines are
tested against captured output formats (``tests/cluster/fixtures/batch``).

The array directive is Torque's ``#PBS -t 1-{n}``.  PBS Pro spells it
``-J``: for PBS Pro write ``#PBS -J 1-{n}`` in your own template (``-s``),
then nothing is added; the engine log name takes the index from
``PBS_ARRAYID`` (Torque) or ``PBS_ARRAY_INDEX`` (PBS Pro).  ``qsub`` prints
the job id (``123[].server``); ``qstat -f -t`` lists the tasks (one
``Job Id:`` block each, ``job_state`` and ``exec_host``) and ``qdel``
cancels the whole array.  Engine ``i`` logs to
``{log_dir}/ipengine-<job number>[<i>]-<i>.log``.
"""
import re

from ipkernel.cluster.batch.base import BatchEngineSet
from ipkernel.cluster.launcher import LaunchError

#: job_state letters of a job that is queued, running, held or exiting.
ACTIVE = frozenset("QRHWTSEB")


class PBSEngineSet(BatchEngineSet):
    """``n`` engines as a PBS/Torque job array (see :class:`~ipkernel.cluster.batch.base.BatchEngineSet`)."""

    mode = "pbs"
    scheduler = "PBS"
    submit_program, list_program, cancel_program = "qsub", "qstat", "qdel"
    prefix = "#PBS"
    array_directive = "#PBS -t 1-{n}"
    queue_directive = "#PBS -q {queue}"
    array_regex = r"^#PBS\s+-[tJ]\b"
    queue_regex = r"^#PBS\s+-q\b"
    job_id_env, index_env = "PBS_JOBID", "PBS_ARRAYID"
    single_job_id_env = "PBS_JOBID"
    extra_directives = ("-N {job_name}", "-j oe", "-o {log_dir}")
    active_states = ACTIVE

    def expand(self, variable):
        if variable == "PBS_ARRAYID":
            return "${PBS_ARRAYID:-$PBS_ARRAY_INDEX}"
        return f"${{{variable}%%.*}}"   # 123[1].server -> 123[1]

    def log_job_id(self):
        return str(self.job_id).split(".")[0]

    def parse_job_id(self, stdout):
        words = stdout.split()
        return words[-1] if words and re.match(r"^\d+(\[\d*\])?(\.\S+)?$", words[-1]) else None

    def list_argv(self, job_id):
        return ["qstat", "-f", "-t", str(job_id)]

    def parse_listing(self, returncode, stdout, stderr, job_id):
        if returncode != 0:
            if "Unknown Job Id" in stderr or "Unknown Job Id" in stdout:
                return []
            raise LaunchError(f"qstat failed for job {job_id}: "
                              f"{stderr.strip() or f'exit status {returncode}'}; "
                              f"is pbs_server up (qstat -B)?", exit_code=returncode)
        number = re.match(r"\d+", str(job_id)).group()
        rows = []
        for block in re.split(r"^(?=Job Id:)", stdout, flags=re.M):
            head = re.match(r"Job Id:\s*(\S+)", block)
            if not head or re.match(r"\d+", head.group(1)).group() != number:
                continue
            state = re.search(r"^\s*job_state\s*=\s*(\S+)", block, re.M)
            hosts = re.search(r"^\s*exec_host\s*=\s*(\S+)", block, re.M)
            comment = re.search(r"^\s*comment\s*=\s*(.+)$", block, re.M)
            rows.append({"task": head.group(1), "state": state.group(1) if state else "?",
                         "hosts": ",".join(sorted({h.split("/")[0] for h in
                                                   hosts.group(1).split("+")})) if hosts else "",
                         "reason": comment.group(1).strip() if comment else ""})
        return rows
