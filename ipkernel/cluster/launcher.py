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

:class:`ForkedEngineLauncher` has the surface of :class:`EngineLauncher`,
but its engine is forked by a :class:`ZygoteLauncher` (the zygote,
:mod:`ipkernel.engine.zygote`, a process that imported the code once);
:class:`ForkedControllerLauncher` does the same for the controller.  The
zygote reaps its children and reports their exit statuses, which
:class:`ForkedProcess` turns into the :class:`subprocess.Popen` interface
the rest of this module uses.
"""
import json
import logging
import os
import select
import shlex
import signal
import subprocess
import sys
import threading
import time
from datetime import datetime
from pathlib import Path

from ipkernel import credentials
from ipkernel.clusterdir import (ClusterDir, MULTIENGINE_FURL, ENGINE_FURL, open_private,
                                 write_private_file)
from ipkernel.controller.app import READY as CONTROLLER_READY
from ipkernel.engine.app import READY as ENGINE_READY
from ipkernel.fcutil import redact_furls
from ipkernel.pids import process_alive

logger = logging.getLogger("ipkernel.cluster")

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
        #: True once :meth:`request_stop` or :meth:`kill` asked the current
        #: child to stop (an engine restarter leaves such a child stopped).
        self.stop_requested = False
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
        with open(self.log_file, "ab", opener=open_private) as log:
            stamp = datetime.now().isoformat(sep=" ", timespec="seconds")
            # (a FURL given on the command line is shown without its secret)
            command = redact_furls(shlex.join(self.argv).replace("\n", "\\n"))
            log.write(f"---- {self.name} started {stamp}: {command}\n".encode())
            log.flush()
            self._log_start = log.tell()
            self.process = self._spawn(log)
        self.stop_requested = False
        self.started_at = time.time()
        if self.pid_file is not None:
            self.pid_file.parent.mkdir(parents=True, exist_ok=True)
            write_private_file(self.pid_file, f"{self.process.pid}\n", durable=False)
        return self.process.pid

    def _spawn(self, log):
        """Start the child with ``log`` (an open file) as its output; return its
        :class:`subprocess.Popen` (or an object with the same methods)."""
        return subprocess.Popen(
            self.argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            env=self.child_env(), cwd=self.cwd, close_fds=True, start_new_session=True)

    def child_env(self):
        """The environment the child is started with (anew at each start)."""
        return self.env if self.env is not None else child_env()

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
        self.stop_requested = self.process is not None
        sent = self.send_signal(signal.SIGTERM)
        if sent and hasattr(signal, "SIGCONT"):
            self.send_signal(signal.SIGCONT)
        return sent

    def kill(self):
        """Kill the child at once and wait for it; return its exit status."""
        self.stop_requested = self.process is not None
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
    With ``engine_key`` (bytes) it gets that key (in its environment) and
    offers the engine gate (see :mod:`ipkernel.credentials`); with
    ``engine_furl=False`` also ``--no-engine-furl``.
    """

    def __init__(self, cluster, args=(), *, parent_pid=None, env=None, cwd=None,
                 engine_key=None, engine_furl=True):
        self.cluster = cluster if isinstance(cluster, ClusterDir) else ClusterDir(cluster)
        self.engine_key = engine_key
        self.engine_furl = engine_furl or engine_key is None
        if not self.engine_furl:
            args = ["--no-engine-furl", *args]
        log_file = self.cluster.log / "ipcontroller.log"
        argv = [sys.executable, "-m", "ipkernel.controller",
                "--parent-pid", parent_pid or os.getpid(),
                "--cluster-dir", self.cluster.path, "--logfile", log_file, *args]
        super().__init__("ipcontroller", argv, log_file, env=env, cwd=cwd,
                         ready_text=CONTROLLER_READY)

    def child_env(self):
        env = super().child_env()
        if self.engine_key is not None:
            env = dict(env, **{credentials.KEY_ENV: self.engine_key.hex()})
        return env

    def is_ready(self):
        files = [MULTIENGINE_FURL, *([ENGINE_FURL] if self.engine_furl else []),
                 *([credentials.GATE_FURL] if self.engine_key is not None else [])]
        return super().is_ready() and all(self.cluster.furl_file(f).exists() for f in files)


class EngineLauncher(ProcessLauncher):
    """``ipengine`` number ``index`` for cluster directory ``cluster``.

    It stops by itself when process ``parent_pid`` (default: this one)
    exits; its pid file is ``pid/ipengine-<index>.pid``.  Ready once it
    registered with the controller.
    """

    def __init__(self, cluster, index, args=(), *, parent_pid=None, env=None, cwd=None,
                 engine_key=None):
        from ipkernel.engine.group import refuse_group_args
        refuse_group_args(args, "an engine launcher")
        self.cluster = cluster if isinstance(cluster, ClusterDir) else ClusterDir(cluster)
        self.index = index
        #: The controller's credential key (see :mod:`ipkernel.credentials`):
        #: each start gives the engine a new one-time credential made from it.
        self.engine_key = engine_key
        name = f"ipengine-{index}"
        log_file = self.cluster.log / f"{name}.log"
        #: The arguments of ``ipengine`` (argv without the interpreter part).
        self.engine_args = [str(a) for a in [
            "--parent-pid", parent_pid or os.getpid(),
            "--cluster-dir", self.cluster.path, "--logfile", log_file, *args]]
        argv = [sys.executable, "-m", "ipkernel.engine", *self.engine_args]
        super().__init__(name, argv, log_file, env=env, cwd=cwd,
                         pid_file=self.cluster.pid_file(name), ready_text=ENGINE_READY)

    def child_env(self):
        env = super().child_env()
        if self.engine_key is not None:
            # in the environment (not argv, not a file): only this user sees it
            env = dict(env, **{credentials.CREDENTIAL_ENV: credentials.mint(self.engine_key)})
        return env


# -- engines forked from a zygote ------------------------------------------------------

#: ``exit_code`` of a forked engine that is gone while nobody could learn its
#: status (its zygote had exited).
LOST_STATUS = 255


class ForkRefused(Exception):
    """The zygote cannot fork engines here (the message says why)."""


class ZygoteLauncher(ProcessLauncher):
    """The zygote of cluster directory ``cluster`` (see
    :mod:`ipkernel.engine.zygote`): one process that imports the engine and
    controller code once and forks engines (and controllers) on request.

    Its stdin and stdout are pipes to this launcher (requests and events),
    its stderr goes to ``log/ipengine-zygote.log``.  It stops by itself
    when process ``parent_pid`` (default: this one) exits or its stdin is
    closed.  Ready once its imports are done (``can_fork`` then says
    whether it can fork).  ``timeout`` bounds the wait for it to be ready
    and for each fork.
    """

    def __init__(self, cluster, *, parent_pid=None, env=None, cwd=None, timeout=60.0):
        self.cluster = cluster if isinstance(cluster, ClusterDir) else ClusterDir(cluster)
        log_file = self.cluster.log / "ipengine-zygote.log"
        argv = [sys.executable, "-m", "ipkernel.engine.zygote",
                "--parent-pid", parent_pid or os.getpid()]
        super().__init__("ipengine-zygote", argv, log_file, env=env, cwd=cwd)
        self.timeout = timeout
        self._requests = 0
        # The event pipe is read by whoever needs an event (the launching
        # thread, an engine restarter's thread): one at a time.
        self._lock = threading.RLock()
        self._reset()

    def _reset(self):
        #: None until the zygote is ready, then whether it can fork.
        self.can_fork = None
        #: Why it cannot fork (None if it can).
        self.reason = None
        self._pending = b""
        self._eof = False
        self._forked = {}
        self._exits = {}

    def _spawn(self, log):
        self._reset()
        return subprocess.Popen(
            self.argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log,
            env=self.env if self.env is not None else child_env(), cwd=self.cwd,
            close_fds=True, start_new_session=True)

    # -- events -------------------------------------------------------------------------

    def collect(self, timeout=0.0):
        """Read the events that arrived, waiting up to ``timeout`` seconds for
        some; True if anything (or the end of the stream) was read."""
        with self._lock:
            if self.process is None or self._eof:
                return False
            stream = self.process.stdout
            if not select.select([stream], [], [], timeout)[0]:
                return False
            data = os.read(stream.fileno(), 65536)
            if not data:
                self._eof = True
                return True
            self._pending += data
            while b"\n" in self._pending:
                line, self._pending = self._pending.split(b"\n", 1)
                try:
                    event = json.loads(line)
                except ValueError:
                    logger.debug("%s wrote a line that is not an event: %r", self.name, line)
                    continue
                self._event(event)
            return True

    def _event(self, event):
        kind = event.get("event")
        if kind == "ready":
            self.can_fork = bool(event.get("fork"))
            self.reason = event.get("reason")
        elif kind == "forked":
            self._forked[event["token"]] = event["pid"]
        elif kind == "refused":
            self._forked[event["token"]] = ForkRefused(event.get("reason"))
        elif kind == "exited":
            self._exits[event["pid"]] = event["status"]

    def finished(self):
        """True once the zygote will report nothing more (it is gone)."""
        return self.process is None or self._eof

    def exit_status(self, pid):
        """The exit status of child ``pid`` as reported, or None."""
        while self.collect():
            pass
        return self._exits.get(pid)

    def is_ready(self):
        while self.collect():
            pass
        return self.can_fork is not None

    # -- control ------------------------------------------------------------------------

    def wait_ready_to_fork(self, deadline=None):
        """Wait until the zygote is ready (until ``deadline``, a
        :func:`time.monotonic` time; default: ``timeout`` from now); return
        ``can_fork``.  :class:`LaunchError` if it is gone or late."""
        if deadline is None:
            deadline = time.monotonic() + self.timeout
        while not self.is_ready():
            self._wait_event(deadline, "was not ready")
        return self.can_fork

    def fork(self, name, args, log_file, *, env=None, cwd=None, program="engine"):
        """Fork a child running ``ipengine args`` (or ``ipcontroller args`` for
        ``program="controller"``) with output to ``log_file``; return its pid.
        :class:`ForkRefused` if the zygote cannot fork, :class:`LaunchError`
        if it is gone or late."""
        with self._lock:
            return self._fork(name, args, log_file, env, cwd, program)

    def _fork(self, name, args, log_file, env, cwd, program):
        deadline = time.monotonic() + self.timeout
        if not self.wait_ready_to_fork(deadline):
            raise ForkRefused(self.reason)
        self._requests += 1
        token = f"{name}#{self._requests}"
        request = {"token": token, "argv": [str(a) for a in args], "log": str(log_file),
                   "cwd": str(cwd) if cwd is not None else None,
                   "env": dict(env) if env is not None else None, "program": program}
        try:
            self.process.stdin.write((json.dumps(request) + "\n").encode())
            self.process.stdin.flush()
        except (BrokenPipeError, ValueError):
            raise self._gone() from None
        while token not in self._forked:
            self._wait_event(deadline, f"did not fork {name}")
        result = self._forked.pop(token)
        if isinstance(result, ForkRefused):
            raise result
        return result

    def _wait_event(self, deadline, late):
        remaining = deadline - time.monotonic()
        if remaining > 0 and self.collect(min(remaining, 1.0)):
            return
        if self.finished():
            raise self._gone()
        if remaining <= 0:
            raise self.failure(f"{self.name} {late} within {self.timeout:g} s")

    def _gone(self):
        code = self.wait(STOP_TIMEOUT)
        return self.failure(f"{self.name} (which forks the engines) exited with status {code}")

    def request_stop(self):
        """Ask the zygote to stop: close its stdin and send SIGTERM."""
        if self.process is not None and self.process.stdin and not self.process.stdin.closed:
            try:
                self.process.stdin.close()
            except BrokenPipeError:
                pass
        return super().request_stop()

    def wait(self, timeout=None):
        code = super().wait(timeout)
        if code is not None and not self._eof:
            # It is gone: read its last reports, then let the pipes go.
            while self.collect():
                pass
            self._eof = True
            for stream in (self.process.stdin, self.process.stdout):
                try:
                    stream.close()
                except OSError:
                    pass
        return code


class ForkedProcess:
    """A child of a :class:`ZygoteLauncher`, with the part of
    :class:`subprocess.Popen`'s interface that :class:`ProcessLauncher` uses.

    Its exit status comes from the zygote's reports; signals go straight
    to the pid.  Once the zygote is gone, a child that is gone too gets
    :data:`LOST_STATUS`.
    """

    def __init__(self, zygote, pid):
        self.zygote = zygote
        self.pid = pid
        self.returncode = None
        self._parent = zygote.process   # the zygote's run that forked it

    def _orphan(self):
        """True once its zygote will report nothing more about it."""
        return self.zygote.process is not self._parent or self.zygote.finished()

    def poll(self):
        if self.returncode is None:
            code = None if self._orphan() else self.zygote.exit_status(self.pid)
            if code is None and self._orphan() and not process_alive(self.pid):
                code = LOST_STATUS
            self.returncode = code
        return self.returncode

    def wait(self, timeout=None):
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.poll() is None:
            remaining = 1.0 if deadline is None else deadline - time.monotonic()
            if remaining <= 0:
                raise subprocess.TimeoutExpired(["ipengine"], timeout)
            if self._orphan():
                time.sleep(min(POLL_INTERVAL, remaining))
            else:
                self.zygote.collect(min(remaining, 1.0))
        return self.returncode

    def send_signal(self, signum):
        if self.poll() is None:
            os.kill(self.pid, signum)

    def terminate(self):
        self.send_signal(signal.SIGTERM)

    def kill(self):
        self.send_signal(signal.SIGKILL)


class _ForkedLauncher:
    """The part of a launcher whose process a zygote forks (see
    :class:`ForkedEngineLauncher`): ``_spawn`` asks the zygote, and starts a
    new process where the zygote refuses to fork."""

    #: What the zygote runs in the child (``"engine"`` or ``"controller"``).
    program = None

    def _spawn(self, log):
        try:
            # (None: the zygote's own environment, unless this child needs its own)
            own = self.env is not None or getattr(self, "engine_key", None) is not None
            pid = self.zygote.fork(self.name, self.argv[3:], self.log_file,
                                   env=self.child_env() if own else None,
                                   cwd=self.cwd, program=self.program)
        except ForkRefused as exc:
            logger.warning("%s: the zygote cannot fork it (%s); starting a new process",
                           self.name, exc)
            self.forked = False
            return super()._spawn(log)
        self.forked = True
        return ForkedProcess(self.zygote, pid)


class ForkedEngineLauncher(_ForkedLauncher, EngineLauncher):
    """:class:`EngineLauncher` whose engine is forked by ``zygote`` (a
    :class:`ZygoteLauncher`), with the same surface: pid file, log,
    readiness, interrupt, shutdown, restart.

    Where the zygote refuses to fork, the engine is started as a new
    process instead (with a warning in the ``ipkernel.cluster`` log).
    """

    program = "engine"

    def __init__(self, zygote, cluster, index, args=(), **kwargs):
        super().__init__(cluster, index, args, **kwargs)
        self.zygote = zygote
        #: True if the current process was forked, False if it was spawned.
        self.forked = None


class ForkedControllerLauncher(_ForkedLauncher, ControllerLauncher):
    """:class:`ControllerLauncher` whose controller is forked by ``zygote``,
    like :class:`ForkedEngineLauncher`: the controller then needs no
    imports of its own.  It still is a process of its own, with its own
    Tubs, certificates, log and pid file."""

    program = "controller"

    def __init__(self, zygote, cluster, args=(), **kwargs):
        super().__init__(cluster, args, **kwargs)
        self.zygote = zygote
        #: True if the current process was forked, False if it was spawned.
        self.forked = None
