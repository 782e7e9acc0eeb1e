"""Slurm: engines as a job array submitted with ``sbatch``.

Submits with ``sbatch --parsable`` (the job id is the first field of its
output), lists with ``squeue -r -t all`` (one row per array task, finished
tasks included while Slurm still remembers them) and cancels with
``scancel``.  In each task ``SLURM_ARRAY_JOB_ID`` is the id ``sbatch``
printed and ``SLURM_ARRAY_TASK_ID`` the index (1..n), so engine ``i`` logs to
``{log_dir}/ipengine-<job id>-<i>.log``; Slurm's own output of a task goes to
``{log_dir}/slurm-<job id>_<i>.out``.  Tested against a real single-node
Slurm (``scripts/ci/slurm.sh``).
"""
from ipkernel.cluster.batch.base import BatchEngineSet
from ipkernel.cluster.launcher import LaunchError

#: squeue's fields: task id, state, nodes, reason.
SQUEUE_FORMAT = "%i|%T|%N|%r"
#: The words of squeue for a task that is queued or running.
ACTIVE = frozenset({"PENDING", "CONFIGURING", "RUNNING", "COMPLETING", "SUSPENDED",
                    "REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED", "RESIZING", "SIGNALING",
                    "STAGE_OUT", "STOPPED", "RESV_DEL_HOLD"})


class SlurmEngineSet(BatchEngineSet):
    """``n`` engines as a Slurm job array (see :class:`~ipkernel.cluster.batch.base.BatchEngineSet`)."""

    mode = "slurm"
    scheduler = "Slurm"
    submit_program, list_program, cancel_program = "sbatch", "squeue", "scancel"
    prefix = "#SBATCH"
    array_directive = "#SBATCH --array=1-{n}"
    queue_directive = "#SBATCH --partition={queue}"
    array_regex = r"^#SBATCH\s+(--array\b|-a\b)"
    queue_regex = r"^#SBATCH\s+(--partition\b|-p\b)"
    job_id_env, index_env = "SLURM_ARRAY_JOB_ID", "SLURM_ARRAY_TASK_ID"
    single_job_id_env = "SLURM_JOB_ID"
    active_states = ACTIVE

    @property
    def extra_directives(self):
        out = "%A_%a" if self.role == "engine" else "%j"
        return ("--job-name={job_name}", f"--output={{log_dir}}/slurm-{out}.out")

    def submit_argv(self, script_path):
        return ["sbatch", "--parsable", str(script_path)]

    def parse_job_id(self, stdout):
        # --parsable prints "jobid" or "jobid;cluster".
        first = stdout.strip().splitlines()[-1].split(";")[0].strip() if stdout.strip() else ""
        return first if first.isdigit() else None

    def list_argv(self, job_id):
        return ["squeue", "--noheader", "--array", "--states=all", "--jobs", str(job_id),
                "--format", SQUEUE_FORMAT]

    def parse_listing(self, returncode, stdout, stderr, job_id):
        if returncode != 0:
            if "Invalid job id" in stderr:
                return []   # forgotten by slurmctld (MinJobAge): ended long ago
            raise LaunchError(f"squeue failed for job {job_id}: "
                              f"{stderr.strip() or f'exit status {returncode}'}; "
                              f"is slurmctld up (sinfo)?", exit_code=returncode)
        rows = []
        for line in stdout.splitlines():
            fields = line.strip().split("|")
            if len(fields) != 4:
                continue
            task, state, nodes, reason = fields
            if task.split("_")[0] != str(job_id):
                continue
            rows.append({"task": task, "state": state, "hosts": nodes,
                         "reason": "" if reason in ("None", "(null)") else reason})
        return rows
