"""Process launchers: a controller or an engine as a child process.

A :class:`ProcessLauncher` owns one child started with :mod:`subprocess`
(no Twisted reactor is needed, so it works from plain Python and Jupyter)
and controls it the way a kernel manager does: :meth:`~ProcessLauncher.start`,
:meth:`~ProcessLauncher.is_alive`, :meth:`~ProcessLauncher.interrupt`,
:meth:`~ProcessLauncher.shutdown` (a polite signal, then a kill after a
timeout), :meth:`~ProcessLauncher.restart` and :meth:`~ProcessLauncher.wait`.

The child's stdout and stderr are appended to its log file (the programs
also get ``--logfile`` with the same path), so everything it says,
including an argument error printed before its logging starts, ends up in
one place.  :meth:`~ProcessLauncher.wait_ready` watches the part of the log
written since the last start for the program's ``ready`` line; when the
child exits first, or the time is up, it raises :class:`LaunchError`
whose message ends with the tail of that log.

The child gets a session of its own, so a Ctrl-C in the terminal reaches
only the launching program, which then stops its children in order.
"""
import os
import shlex
import signal
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

from ipkernel.clusterdir import ClusterDir, MULTIENGINE_FURL, ENGINE_FURL, write_private_file
from ipkernel.controller.app import READY as CONTROLLER_READY
from ipkernel.engine.app import READY as ENGINE_READY

#: Interval of the bounded polls for an external process's log or exit.
POLL_INTERVAL = 0.05
#: How long a polite shutdown may take before the process is killed.
STOP_TIMEOUT = 10.0
#: Lines of log shown by a :class:`LaunchError`.
TAIL_LINES = 25



class LaunchError(RuntimeError):
    """A process did not become ready; the message ends with its log's tail.

    ``name`` is the process's name, ``log_file`` its log and ``exit_code``
    its exit status (None if it was still running).
    """

    def __init__(self, message, name=None, log_file=None, exit_code=None):
        super().__init__(message)
        self.name = name
        self.log_file = log_file
        self.exit_code = exit_code


def read_log(path, start=0):
    """The text of log file ``path`` from byte offset ``start`` ('' if missing)."""
    try:
        with open(path, "rb") as f:
            f.seek(start)
            return f.read().decode("utf-8", "replace")
    except FileNotFoundError:
        return ""


def tail(text, lines=TAIL_LINES):
    """The last ``lines`` lines of ``text``."""
    return "\n".join(text.rstrip("\n").splitlines()[-lines:])


def child_env(extra=None):
    """The environment for a child: ours, unbuffered, plus ``extra``."""
    env = dict(os.environ)
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra or {})
    return env


class ProcessLauncher:
    """One child process with its log file (see the module doc).

    ``argv`` is the full command line; ``log_file`` receives the child's
    output (appended); ``pid_file``, if given, holds the child's pid while
    it runs; ``ready_text`` is the log line fragment meaning "ready".
    """

    def __init__(self, name, argv, log_file, *, env=None, cwd=None, pid_file=None,
                 ready_text=None):
        self.name = name
        self.argv = [str(a) for a in argv]
        self.log_file = Path(log_file)
        self.env = env
        self.cwd = cwd
        self.pid_file = Path(pid_file) if pid_file else None
        self.ready_text = ready_text
        self.process = None
        self.started_at = None
        self._log_start = 0

    def __repr__(self):
        state = "running" if self.is_alive() else ("exited" if self.process else "not started")
        return f"<{type(self).__name__} {self.name} pid={self.pid} {state}>"

    # -- state --------------------------------------------------------------------------

    @property
    def pid(self):
        """The pid of the current (or last) child, None before the first start."""
        return self.process.pid if self.process is not None else None

    @property
    def exit_code(self):
        """The exit status once the child exited (negative: killed by that signal)."""
        return self.process.poll() if self.process is not None else None

    def is_alive(self):
        """True while the child runs."""
        return self.process is not None and self.process.poll() is None

    def log_text(self):
        """What the child wrote to its log since it was last started (after the
        header line the launcher writes there)."""
        return read_log(self.log_file, self._log_start)

    def is_ready(self):
        """True once the child's ready line is in its log (always, without one)."""
        return self.ready_text is None or self.ready_text in self.log_text()

    # -- control ------------------------------------------------------------------------

    def start(self):
        """Start the child; return its pid.  RuntimeError if it already runs."""
        if self.is_alive():
            raise RuntimeError(f"{self.name} is already running (pid {self.pid})")
        self.log_file.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_file, "ab") as log:
            stamp = datetime.now().isoformat(sep=" ", timespec="seconds")
            command = shlex.join(self.argv).replace("\n", "\\n")
            log.write(f"---- {self.name} started {stamp}: {command}\n".encode())
            log.flush()
            self._log_start = log.tell()
            self.process = subprocess.Popen(
                self.argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                env=self.env if self.env is not None else child_env(), cwd=self.cwd,
                close_fds=True, start_new_session=True)
        self.started_at = time.time()
        if self.pid_file is not None:
            self.pid_file.parent.mkdir(parents=True, exist_ok=True)
            write_private_file(self.pid_file, f"{self.process.pid}\n")
        return self.process.pid

    def send_signal(self, signum):
        """Send ``signum`` to the child; False if it is not running."""
        if not self.is_alive():
            return False
        try:
            self.process.send_signal(signum)
        except ProcessLookupError:
            return False
        return True

    def interrupt(self):
        """Interrupt the child (SIGINT: an engine stops its running code)."""
        return self.send_signal(signal.SIGINT)

    def wait(self, timeout=None):
        """Wait for the child to exit; return its exit status, or None on timeout."""
        if self.process is None:
            return None
        try:
            code = self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            return None
        self._forget_pid_file()
        return code

    def request_stop(self):
        """Ask the child to stop (SIGTERM; SIGCONT too, in case it is frozen)."""
        sent = self.send_signal(signal.SIGTERM)
        if sent and hasattr(signal, "SIGCONT"):
            self.send_signal(signal.SIGCONT)
        return sent

    def kill(self):
        """Kill the child at once and wait for it; return its exit status."""
        if self.is_alive():
            try:
                self.process.kill()
            except ProcessLookupError:
                pass
        return self.wait()

    def shutdown(self, timeout=STOP_TIMEOUT, now=False):
        """Stop the child: politely, then by force after ``timeout`` seconds.

        ``now=True`` skips the polite attempt.  Returns the exit status
        (None if it was never started).
        """
        if self.process is None:
            return None
        if not now and self.request_stop():
            code = self.wait(timeout)
            if code is not None:
                return code
        return self.kill()

    def restart(self, timeout=STOP_TIMEOUT, now=False):
        """Shut the child down and start it again with the same command; return the new pid."""
        self.shutdown(timeout, now=now)
        return self.start()

    def wait_ready(self, timeout):
        """Return once the child is ready; raise :class:`LaunchError` if it exits
        first or is not ready within ``timeout`` seconds (it is left running)."""
        deadline = time.monotonic() + timeout
        while True:
            if self.is_ready():
                return
            code = self.exit_code
            if code is not None:
                raise self.failure(f"{self.name} exited with status {code} before it was ready")
            if time.monotonic() >= deadline:
                raise self.failure(f"{self.name} was not ready within {timeout:g} s")
            time.sleep(POLL_INTERVAL)

    def failure(self, headline):
        """A :class:`LaunchError` with ``headline`` and the tail of the child's log."""
        shown = tail(self.log_text()) or "(the log is empty)"
        message = (f"{headline}; the last lines of its log {self.log_file}:\n"
                   f"{shown}")
        return LaunchError(message, name=self.name, log_file=self.log_file,
                           exit_code=self.exit_code)

    def _forget_pid_file(self):
        if self.pid_file is not None:
            try:
                if self.pid_file.read_text().strip() == str(self.process.pid):
                    self.pid_file.unlink()
            except (OSError, ValueError):
                pass


def shutdown_all(launchers, timeout=STOP_TIMEOUT):
    """Stop several children at once: all are asked politely, then whatever
    still runs after ``timeout`` seconds (for all of them together) is killed."""
    launchers = [launcher for launcher in launchers if launcher.process is not None]
    for launcher in launchers:
        launcher.request_stop()
    deadline = time.monotonic() + timeout
    for launcher in launchers:
        launcher.wait(max(0.0, deadline - time.monotonic()))
    for launcher in launchers:
        launcher.kill()


class ControllerLauncher(ProcessLauncher):
    """``ipcontroller`` for cluster directory ``cluster`` (a path or ClusterDir).

    It stops by itself when process ``parent_pid`` (default: this one)
    exits.  Ready once it logged its ready line and wrote its FURL files.
    """

    def __init__(self, cluster, args=(), *, parent_pid=None, env=None, cwd=None):
        self.cluster = cluster if isinstance(cluster, ClusterDir) else ClusterDir(cluster)
        log_file = self.cluster.log / "ipcontroller.log"
        argv = [sys.executable, "-m", "ipkernel.controller",
                "--parent-pid", parent_pid or os.getpid(),
                "--cluster-dir", self.cluster.path, "--logfile", log_file, *args]
        super().__init__("ipcontroller", argv, log_file, env=env, cwd=cwd,
                         ready_text=CONTROLLER_READY)

    def is_ready(self):
        return (super().is_ready()
                and self.cluster.furl_file(ENGINE_FURL).exists()
                and self.cluster.furl_file(MULTIENGINE_FURL).exists())


class EngineLauncher(ProcessLauncher):
    """``ipengine`` number ``index`` for cluster directory ``cluster``.

    It stops by itself when process ``parent_pid`` (default: this one)
    exits; its pid file is ``pid/ipengine-<index>.pid``.  Ready once it
    registered with the controller.
    """

    def __init__(self, cluster, index, args=(), *, parent_pid=None, env=None, cwd=None):
        self.cluster = cluster if isinstance(cluster, ClusterDir) else ClusterDir(cluster)
        self.index = index
        name = f"ipengine-{index}"
        log_file = self.cluster.log / f"{name}.log"
        argv = [sys.executable, "-m", "ipkernel.engine",
                "--parent-pid", parent_pid or os.getpid(),
                "--cluster-dir", self.cluster.path, "--logfile", log_file, *args]
        super().__init__(name, argv, log_file, env=env, cwd=cwd,
                         pid_file=self.cluster.pid_file(name), ready_text=ENGINE_READY)
