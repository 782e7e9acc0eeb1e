"""A peer's server process (scheduler, controller, workers) started in a
network namespace of :mod:`bench.hosts`, its output in a log file.

ipkernel's own processes use ipkernel's launchers instead
(:mod:`bench.systems.ipkernel_hosts`); this is for the peers' command-line
programs.
"""
import signal
import subprocess
import time
from pathlib import Path

from bench.hosts import Placement

#: Seconds between two looks while waiting.
POLL = 0.05
#: Lines of the log shown when a process fails.
TAIL = 15


class NsProcess:
    """``argv`` run in namespace ``ns`` (None: here); output to ``log_path``."""

    def __init__(self, name, argv, ns, log_path, env=None):
        self.name = name
        self.argv = [*Placement.prefix(ns), *map(str, argv)]
        self.log_path = Path(log_path)
        self.env = env
        self.popen = None

    @property
    def pid(self):
        """The process's pid (``ip netns exec`` execs the command: it is the
        program's own)."""
        return self.popen.pid

    def start(self):
        """Start it; return self."""
        with open(self.log_path, "ab") as log:
            self.popen = subprocess.Popen(self.argv, stdin=subprocess.DEVNULL, stdout=log,
                                          stderr=subprocess.STDOUT, env=self.env,
                                          start_new_session=True)
        return self

    def tail(self):
        """The last lines of its log."""
        try:
            lines = self.log_path.read_text(errors="replace").splitlines()
        except OSError:
            return "(no log)"
        return "\n".join(lines[-TAIL:]) or "(the log is empty)"

    def wait_for(self, check, what, deadline):
        """Poll ``check()`` until true; RuntimeError (with the log's tail) when
        the process exits first or ``deadline`` (monotonic) passes."""
        while not check():
            code = self.popen.poll()
            if code is not None:
                raise RuntimeError(f"{self.name} exited with status {code} before {what}; "
                                   f"its log {self.log_path}:\n{self.tail()}")
            if time.monotonic() >= deadline:
                raise RuntimeError(f"{self.name}: no {what} in time; its log "
                                   f"{self.log_path}:\n{self.tail()}")
            time.sleep(POLL)

    def stop(self, timeout=15):
        """SIGTERM, then SIGKILL after ``timeout`` seconds."""
        if self.popen is None or self.popen.poll() is not None:
            return
        self.popen.send_signal(signal.SIGTERM)
        try:
            self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            self.popen.wait(timeout)


def stop_all(processes, timeout=15):
    """Stop ``processes`` (newest first), every one even if one fails."""
    errors = []
    for process in reversed(processes):
        try:
            process.stop(timeout)
        except Exception as exc:  # noqa: B902 - keep stopping the others
            errors.append(exc)
    if errors:
        raise errors[0]
