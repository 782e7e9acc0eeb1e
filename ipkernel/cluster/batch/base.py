"""The generic batch launcher: engines (or the controller) as a scheduler job.

:class:`BatchEngineSet` writes a job script from a template, submits it with
the scheduler's own command (``sbatch``, ``qsub``, ``bsub``), reads the job
id from what that command printed, asks the scheduler's listing command
(``squeue``, ``qstat``, ``bjobs``) for the job's state and cancels it with
``scancel``, ``qdel`` or ``bkill``.  A subclass per scheduler only names the
commands, the directive formats and parses their output; see the hooks
marked *hook* below.

Templates
---------
A template is a shell script with these placeholders (public API: they are
what an ``ipcluster slurm -s FILE`` template may use):

``{n}``
    the number of engines (the size of the job array);
``{engine_command}``
    the whole engine command line, shell-quoted, with ``--logfile`` so that
    each array task's engine logs to
    ``{log_dir}/ipengine-<job id>-<array index>.log`` (the job id and the
    index come from the scheduler's environment variables, expanded by the
    shell when the task runs);
``{cluster_dir}``, ``{log_dir}``
    the cluster directory and its log folder (both must be on a filesystem
    shared with the nodes);
``{queue}``
    the queue (partition) given with ``-q``/``queue=``, or empty;
``{job_name}``
    the job's name.

Only these names are replaced: shell ``${VAR}``, ``{}`` and the like are left
alone.  Any other ``{lowercase_word}`` is an error naming it (a mistyped
placeholder); write ``{{word}}`` for a literal ``{word}``.

Unless the template has one already, the scheduler's job array directive
(``#SBATCH --array=1-{n}``, ``#PBS -t 1-{n}``, ``#$ -t 1-{n}``,
``#BSUB -J name[1-{n}]``) is added after the leading block of ``#`` lines
(shebang and directives), and with a queue its queue directive likewise:
one engine per array task, as IPython 0.10 did.

Every scheduler command runs with a timeout (:data:`COMMAND_TIMEOUT`); a
command that is missing, fails or does not answer raises
:class:`~ipkernel.cluster.launcher.LaunchError` quoting its own error and
saying what to do.

:class:`BatchControllerJob` runs the controller as a one-task job of the
same scheduler; it is ready once its FURL files appear in the (shared)
cluster directory.
"""
import os
import re
import shlex
import subprocess
import sys
import time

from ipkernel.clusterdir import (ENGINE_FURL, MULTIENGINE_FURL, ensure_private_dir,
                                 write_private_file)
from ipkernel.cluster.engineset import JOBS_DIR, EngineSet, engine_set_class
from ipkernel.cluster.launcher import LaunchError, read_log, tail

#: Seconds a scheduler command may take before it counts as not answering.
COMMAND_TIMEOUT = 30.0
#: Interval of the bounded polls of the scheduler's listing.
POLL_INTERVAL = 0.5
#: The placeholders of a template.
PLACEHOLDERS = ("n", "engine_command", "cluster_dir", "log_dir", "queue", "job_name")

# {word} not preceded by $ (shell ${VAR} stays); {{word}} is a literal {word}.
_PLACEHOLDER = re.compile(r"(?<!\$)\{(\{?)([a-z][a-z0-9_]*)(\}?)\}")


def fill_template(template, values):
    """``template`` with the :data:`PLACEHOLDERS` replaced by ``values``.

    ValueError naming an unknown ``{word}`` placeholder."""
    def replace(match):
        open_extra, word, close_extra = match.groups()
        if open_extra and close_extra:
            return "{" + word + "}"
        if word not in values:
            known = ", ".join("{" + p + "}" for p in PLACEHOLDERS)
            raise ValueError(f"the job script template has an unknown placeholder {{{word}}} "
                             f"(known: {known}); write {{{{{word}}}}} for a literal {{{word}}}")
        return open_extra + str(values[word]) + close_extra
    return _PLACEHOLDER.sub(replace, template)


def insert_directives(script, lines):
    """``script`` with directive ``lines`` added after its leading ``#`` block."""
    if not lines:
        return script
    body = script.splitlines(keepends=True)
    at = 0
    for i, line in enumerate(body):
        stripped = line.strip()
        if stripped.startswith("#"):
            at = i + 1
        elif stripped:
            break
    if at and not body[at - 1].endswith("\n"):
        body[at - 1] += "\n"
    return "".join(body[:at] + [line + "\n" for line in lines] + body[at:])


def run_command(argv, timeout=COMMAND_TIMEOUT, *, scheduler="the scheduler", stdin=None):
    """Run ``argv``; return ``(returncode, stdout, stderr)``.

    LaunchError when the program is missing or does not answer in time."""
    try:
        done = subprocess.run(argv, input=stdin, capture_output=True, text=True,
                              timeout=timeout, check=False)
    except FileNotFoundError:
        raise LaunchError(f"{argv[0]} not found on PATH: is {scheduler} installed here? "
                          f"Run this on a host that can submit {scheduler} jobs "
                          f"(or put its commands on PATH)") from None
    except subprocess.TimeoutExpired:
        raise LaunchError(f"{shlex.join(argv)} did not answer within {timeout:g} s: is the "
                          f"{scheduler} controller up and reachable from this host?") from None
    return done.returncode, done.stdout, done.stderr


class BatchEngineSet(EngineSet):
    """``n`` engines as one job array of a batch scheduler.

    ``queue``: the queue/partition (adds the queue directive unless the
    template has one).  ``script``: a template (its text, or the path of a
    file holding it; default :attr:`default_template`).  ``runner``: the
    callable running scheduler commands, ``runner(argv, timeout[, stdin])``
    returning ``(returncode, stdout, stderr)`` (default :func:`run_command`;
    tests pass one that records the argv and answers with captured output).
    ``role``: ``"engine"`` (a job array) or ``"controller"`` (one task, see
    :class:`BatchControllerJob`).
    """

    # -- hooks: a scheduler names these ------------------------------------------------

    #: Human name, used in messages (*hook*).
    scheduler = None
    #: Programs (*hook*): submit, list, cancel.
    submit_program = list_program = cancel_program = None
    #: Directive prefix of the script, e.g. ``#SBATCH`` (*hook*).
    prefix = None
    #: Format of the job array directive; ``{n}``, ``{job_name}`` (*hook*).
    array_directive = None
    #: Format of the queue directive; ``{queue}`` (*hook*).
    queue_directive = None
    #: Regexes (multiline) telling the template already has these (*hook*).
    array_regex = queue_regex = None
    #: Environment variables in the job: the job id the submit command
    #: printed, and the array index of the task (*hook*).
    job_id_env = index_env = None
    #: The job id's variable in a one-task (controller) job (*hook*).
    single_job_id_env = None
    #: Extra directives of the default template (e.g. where the scheduler
    #: writes the job's own output), formats like the template (*hook*).
    extra_directives = ()
    #: State words that mean "still queued or running" (*hook*).
    active_states = frozenset()

    def submit_argv(self, script_path):
        """argv submitting the script file (*hook*)."""
        return [self.submit_program, str(script_path)]

    def submit_input(self, script_path):
        """Text for the submit command's stdin, or None (*hook*; ``bsub <``)."""
        return None

    def parse_job_id(self, stdout):
        """The job id in the submit command's output; None if none (*hook*)."""
        raise NotImplementedError

    def list_argv(self, job_id):
        """argv listing the job's tasks (*hook*)."""
        raise NotImplementedError

    def parse_listing(self, returncode, stdout, stderr, job_id):
        """Rows ``{"task", "state", "hosts", "reason"}`` of the job in the
        listing command's output; ``[]`` when it no longer lists the job;
        LaunchError when the command failed for another reason (*hook*)."""
        raise NotImplementedError

    def cancel_argv(self, job_id):
        """argv cancelling the whole job (*hook*)."""
        return [self.cancel_program, str(job_id)]

    def log_job_id(self):
        """The job id as the log file names show it (*hook*, as :meth:`expand`)."""
        return str(self.job_id)

    # -- the set ----------------------------------------------------------------------------

    def __init__(self, cluster, n, *, queue=None, script=None, runner=None, role="engine",
                 command_timeout=COMMAND_TIMEOUT, **kwargs):
        if role not in ("engine", "controller"):
            raise ValueError(f"role must be 'engine' or 'controller', not {role!r}")
        self.role = role
        super().__init__(cluster, n, **kwargs)
        self.queue = queue or None
        self.template = self._read_template(script)
        self.runner = runner or (lambda argv, timeout, stdin=None: run_command(
            argv, timeout, scheduler=self.scheduler, stdin=stdin))
        self.command_timeout = command_timeout
        self.job_id = None
        self.script_file = None
        self._last_rows = []

    def _read_template(self, script):
        if script is None:
            return None
        if "\n" in str(script):
            return str(script)
        from pathlib import Path
        path = Path(script).expanduser()
        try:
            return path.read_text(encoding="utf-8")
        except OSError as exc:
            raise ValueError(f"cannot read the job script template {path}: {exc.strerror}; "
                             f"give -s/script= an existing file (or the template's text)") from None

    @property
    def job_name(self):
        """The job's name (the scheduler shows it)."""
        return "ipcontroller" if self.role == "controller" else "ipengine"

    @property
    def default_template(self):
        """The template used without ``script``: directives, then the command."""
        lines = ["#!/bin/sh", *(f"{self.prefix} {d}" for d in self.extra_directives),
                 "{engine_command}"]
        return "\n".join(lines) + "\n"

    def log_pattern(self):
        """The engine/controller log file name, with the shell expansions."""
        if self.role == "controller":
            return f"ipcontroller-{self.expand(self.single_job_id_env)}.log"
        return f"ipengine-{self.expand(self.job_id_env)}-{self.expand(self.index_env)}.log"

    def expand(self, variable):
        """Shell text expanding ``variable`` in the job (*hook*: PBS drops the
        server part of its job id)."""
        return f"${{{variable}}}"

    def command_line(self):
        """The ``{engine_command}`` text: quoted argv and ``--logfile``."""
        log_dir = shlex.quote(str(self.cluster.log.absolute()))
        # The variables stay outside the quotes so the task's shell expands them.
        return (f"{shlex.join(self.engine_argv())} --logfile "
                f"{log_dir}/\"{self.log_pattern()}\"")

    def script_text(self):
        """The job script that :meth:`~ipkernel.cluster.batch.base.BatchEngineSet.start` submits."""
        template = self.template if self.template is not None else self.default_template
        values = {"n": self.n, "engine_command": self.command_line(),
                  "cluster_dir": str(self.cluster.path.absolute()),
                  "log_dir": str(self.cluster.log.absolute()), "queue": self.queue or "",
                  "job_name": self.job_name}
        text = fill_template(template, values)
        added = []
        if self.role == "engine" and not re.search(self.array_regex, text, re.M):
            added.append(self.array_directive.format(n=self.n, job_name=self.job_name))
        if self.queue and not re.search(self.queue_regex, text, re.M):
            added.append(self.queue_directive.format(queue=self.queue))
        return insert_directives(text, added)

    def _run(self, argv, stdin=None):
        if stdin is None:
            return self.runner(argv, self.command_timeout)
        return self.runner(argv, self.command_timeout, stdin)

    def start(self):
        if self.job_id is not None:
            raise RuntimeError(f"{self.name} was started already (job {self.job_id})")
        self.cluster.create()
        ensure_private_dir(self.cluster.path / JOBS_DIR)
        self.script_file = self.cluster.path / JOBS_DIR / f"{self.name}.sh"
        write_private_file(self.script_file, self.script_text(), durable=False)
        argv = self.submit_argv(self.script_file)
        code, out, err = self._run(argv, self.submit_input(self.script_file))
        job_id = self.parse_job_id(out) if code == 0 else None
        if job_id is None:
            said = (err.strip() or out.strip() or f"exit status {code}")
            raise LaunchError(f"{shlex.join(argv)} failed: {said}\n(check the queue "
                              f"{self.queue!r} and the script {self.script_file}; "
                              f"{self.list_program} and the scheduler's documentation tell "
                              f"what it accepts)" if self.queue else
                              f"{shlex.join(argv)} failed: {said}\n(check the script "
                              f"{self.script_file} and that this host may submit "
                              f"{self.scheduler} jobs)", exit_code=code)
        self.job_id = job_id
        return self

    def rows(self):
        """The scheduler's rows of the job (``[]`` once it is no longer listed)."""
        if self.job_id is None:
            return []
        code, out, err = self._run(self.list_argv(self.job_id))
        self._last_rows = self.parse_listing(code, out, err, self.job_id)
        return self._last_rows

    def _active(self, rows):
        return [r for r in rows if r["state"] in self.active_states]

    def poll(self):
        if self.job_id is None:
            return None
        rows = self.rows()
        if self._active(rows):
            return None
        logs = f"logs: {self.cluster.log.absolute()}/{self.job_name}-*"
        if not rows:
            return (f"{self.scheduler} job {self.job_id} is no longer listed by "
                    f"{self.list_program}: it ended ({logs})")
        states = ", ".join(f"{r['task']} {r['state']}" + (f" ({r['reason']})" if r.get("reason")
                                                          else "") for r in rows)
        return f"{self.scheduler} job {self.job_id} ended: {states} ({logs})"

    def stop(self, timeout=30.0):
        if self.job_id is None:
            return
        deadline = time.monotonic() + timeout
        if not self._active(self.rows()):
            return
        code, out, err = self._run(self.cancel_argv(self.job_id))
        if code != 0 and self._active(self.rows()):
            raise LaunchError(f"{shlex.join(self.cancel_argv(self.job_id))} failed: "
                              f"{(err or out).strip() or f'exit status {code}'}",
                              exit_code=code)
        while True:
            active = self._active(self.rows())
            if not active:
                return
            if time.monotonic() >= deadline:
                listed = ", ".join(f"{r['task']} {r['state']}" for r in active)
                by_hand = shlex.join(self.cancel_argv(self.job_id))
                raise LaunchError(f"{self.scheduler} job {self.job_id} still listed "
                                  f"{timeout:g} s after {self.cancel_program}: {listed}; "
                                  f"cancel it by hand ({by_hand})")
            time.sleep(POLL_INTERVAL)

    def describe(self):
        if self.job_id is None:
            return [{"job": "-", "hosts": "", "state": "not submitted"}]
        rows = self.rows()
        if not rows:
            return [{"job": self.job_id, "hosts": "", "state": "ended"}]
        hosts = sorted({h for r in rows for h in r["hosts"].split(",") if h})
        states = sorted({r["state"] for r in rows})
        return [{"job": self.job_id, "hosts": ",".join(hosts), "state": "/".join(states)}]

    def state(self):
        return {"job_id": self.job_id, "queue": self.queue, "role": self.role,
                "script_file": str(self.script_file) if self.script_file else None}

    def forget(self):
        """Remove the record and the job script (once stopped)."""
        super().forget()
        if self.script_file:
            try:
                os.unlink(self.script_file)
            except FileNotFoundError:
                pass

    @classmethod
    def from_record(cls, cluster, record):
        state = record.get("state") or {}
        self = cls(cluster, record.get("n") or 1, name=record.get("name"),
                   queue=state.get("queue"), role=state.get("role") or "engine")
        self.job_id = state.get("job_id")
        self.script_file = state.get("script_file")
        return self


class BatchControllerJob:
    """The controller as a one-task batch job of ``engine_set`` 's scheduler
    (made by :meth:`for_mode`); the launcher surface ``Cluster`` uses:
    :meth:`~BatchControllerJob.start`, :meth:`~BatchControllerJob.wait_ready`,
    :meth:`~BatchControllerJob.is_alive`, :meth:`~BatchControllerJob.shutdown`."""

    def __init__(self, job):
        self.job = job
        self._started_at = None

    @classmethod
    def for_mode(cls, mode, cluster, args=(), *, queue=None, script=None, runner=None):
        """A controller job of batch ``mode`` (``slurm`` ...) for ``cluster``
        with ipcontroller arguments ``args``."""
        job_class = engine_set_class(mode)
        job = job_class(cluster, 1, engine_command=[sys.executable, "-m", "ipkernel.controller"],
                        engine_args=args, queue=queue, script=script, runner=runner,
                        role="controller", name=f"{mode}-controller-{int(time.time())}")
        return cls(job)

    @property
    def cluster(self):
        return self.job.cluster

    @property
    def log_file(self):
        """The controller's log (known once submitted)."""
        if self.job.job_id is None:
            return self.cluster.log
        return self.cluster.log / f"ipcontroller-{self.job.log_job_id()}.log"

    def __repr__(self):
        return f"{self.job.scheduler} job {self.job.job_id or '-'}"

    def start(self):
        """Submit the controller's job (and record it); returns self."""
        self._started_at = time.time()
        self.job.start()
        self.job.save()
        return self

    def _furls_fresh(self):
        for name in (MULTIENGINE_FURL, ENGINE_FURL):
            path = self.cluster.furl_file(name)
            try:
                if path.stat().st_mtime < self._started_at - 1:
                    return False
            except FileNotFoundError:
                return False
        return True

    def wait_ready(self, timeout):
        """Return once the job wrote fresh FURL files; LaunchError if the job
        ended first or ``timeout`` passed (with the log's tail)."""
        deadline = time.monotonic() + timeout
        while not self._furls_fresh():
            ended = self.job.poll()
            if ended or time.monotonic() >= deadline:
                why = ended or (f"no FURL files in {self.cluster.security} after {timeout:g} s "
                                f"({self.job.describe()[0]['state']}; a busy queue needs a "
                                f"larger timeout)")
                log = tail(read_log(self.log_file)) if self.log_file.is_file() else ""
                raise LaunchError(f"the controller job did not become ready: {why}\n{log}",
                                  name="ipcontroller", log_file=self.log_file)
            time.sleep(POLL_INTERVAL)
        return self

    def is_alive(self):
        """True while the scheduler lists the controller's job as queued or running."""
        return self.job.job_id is not None and self.job.poll() is None

    def shutdown(self, timeout=30.0, now=False):
        """Cancel the job; return once the scheduler no longer lists it."""
        self.job.stop(timeout)

    stop = shutdown

    def forget(self):
        self.job.forget()

    def describe(self):
        return self.job.describe()
