"""The pid files of a cluster directory: who runs, since when, and stale files.

``pid/ipcluster.pid`` belongs to the ``ipcluster`` process watching the
cluster, ``pid/ipcontroller.pid`` to the controller (written by itself) and
``pid/ipengine-<n>.pid`` to the engines (written by their launcher).  A
file whose process is gone, or whose pid now belongs to a program that is
not part of ipkernel, is *stale*.

A process's uptime is measured from its pid file's modification time,
written when the process started.
"""
import os
import re
import signal
import time
from dataclasses import dataclass
from pathlib import Path

from ipkernel.pids import process_alive, signal_quietly

SUPERVISOR = "ipcluster"
CONTROLLER = "ipcontroller"
ENGINE_PREFIX = "ipengine-"
#: Console scripts of ours (processes started with -m name an ipkernel module).
_OUR_PROGRAMS = ("ipcluster", "ipcontroller", "ipengine")
POLL_INTERVAL = 0.05


class AlreadyRunning(Exception):
    """A pid file names a live process of ours (``record``)."""

    def __init__(self, record):
        super().__init__(f"{record.name} is already running (pid {record.pid}, "
                         f"pid file {record.path})")
        self.record = record


@dataclass
class PidRecord:
    """One pid file: ``name`` (``ipengine-2``), ``path``, ``pid`` (None when
    unreadable), ``alive`` and ``started`` (a time.time() value)."""

    name: str
    path: Path
    pid: int | None
    alive: bool
    started: float

    @property
    def uptime(self):
        """Seconds since the process started."""
        return max(0.0, time.time() - self.started)


def is_ours(pid):
    """True unless ``pid`` is known to run something other than an ipkernel
    program (checked where /proc shows command lines): one of its arguments
    is a module ``ipkernel.*`` or a program ``ipcluster``/``ipcontroller``/``ipengine``."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            argv = f.read().decode("utf-8", "replace").split("\0")
    except FileNotFoundError:
        return not os.path.isdir("/proc/self")  # no /proc: cannot tell, trust the file
    except OSError:
        return True
    return any(arg.startswith("ipkernel.") or os.path.basename(arg) in _OUR_PROGRAMS
               for arg in argv)


def read_record(path):
    """The :class:`PidRecord` of pid file ``path``, or None if it is gone."""
    path = Path(path)
    try:
        text = path.read_text()
        started = path.stat().st_mtime
    except FileNotFoundError:
        return None
    try:
        pid = int(text.strip())
    except ValueError:
        pid = None
    alive = pid is not None and process_alive(pid) and is_ours(pid)
    return PidRecord(path.stem, path, pid, alive, started)


def _order(path):
    name = path.stem
    if name == SUPERVISOR:
        return (0, 0)
    if name == CONTROLLER:
        return (1, 0)
    match = re.fullmatch(re.escape(ENGINE_PREFIX) + r"(\d+)", name)
    return (2, int(match.group(1))) if match else (3, name)


def scan(pid_dir):
    """Every pid file of ours in ``pid_dir``: ipcluster, ipcontroller, engines by number."""
    pid_dir = Path(pid_dir)
    if not pid_dir.is_dir():
        return []
    paths = sorted((p for p in pid_dir.glob("*.pid") if p.stem in (SUPERVISOR, CONTROLLER)
                    or p.stem.startswith(ENGINE_PREFIX)), key=_order)
    return [r for r in map(read_record, paths) if r is not None]


def remove_stale(records):
    """Delete the pid files of the records that are not alive; return those records."""
    stale = [r for r in records if not r.alive]
    for record in stale:
        record.path.unlink(missing_ok=True)
    return stale


def claim(path):
    """Create pid file ``path`` for this process.

    A stale file is replaced; a file naming a live process of ours raises
    :class:`AlreadyRunning`.  Creation is atomic, so of two processes
    claiming the same file at once only one succeeds.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    for _ in range(2):
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            record = read_record(path)
            if record is not None and record.alive and record.pid != os.getpid():
                raise AlreadyRunning(record) from None
            path.unlink(missing_ok=True)
            continue
        with os.fdopen(fd, "w") as f:
            f.write(f"{os.getpid()}\n")
        return path
    record = read_record(path)
    raise AlreadyRunning(record or PidRecord(path.stem, path, None, True, time.time()))


def release(path):
    """Delete pid file ``path`` if it names this process."""
    path = Path(path)
    try:
        if int(path.read_text().strip()) == os.getpid():
            path.unlink()
    except (OSError, ValueError):
        pass


def wait_gone(pids, timeout):
    """Poll until none of ``pids`` runs or ``timeout`` passed; return those still running."""
    deadline = time.monotonic() + timeout
    while True:
        running = [pid for pid in pids if process_alive(pid)]
        if not running or time.monotonic() >= deadline:
            return running
        time.sleep(POLL_INTERVAL)


def terminate(pids, timeout):
    """Stop processes that are not our children: SIGTERM, then SIGKILL for
    those still running after ``timeout`` seconds.  Returns the pids that
    survived even that (normally none)."""
    pids = [pid for pid in pids if process_alive(pid)]
    for pid in pids:
        signal_quietly(pid, signal.SIGTERM)
        if hasattr(signal, "SIGCONT"):
            signal_quietly(pid, signal.SIGCONT)
    running = wait_gone(pids, timeout)
    for pid in running:
        signal_quietly(pid, getattr(signal, "SIGKILL", signal.SIGTERM))
    return wait_gone(running, timeout)
