"""Process ids: is a process alive, when did it start, who is its parent
(from ``/proc``), and signals to processes that may be gone (used for pid
files, parent watching and the launchers)."""
import os

from twisted.internet import task


def process_alive(pid):
    """True while process ``pid`` runs (a zombie, exited but not yet reaped, does not)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    fields = stat_fields(pid)
    return fields is None or fields[0] not in ("Z", "X")


def stat_fields(pid):
    """The fields of ``/proc/PID/stat`` after the command name (``[0]`` is
    the state, ``[1]`` the parent's pid, ``[19]`` the start time), or None
    where it cannot be read."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None


def _stat_int(pid, index):
    fields = stat_fields(pid)
    try:
        return int(fields[index]) if fields is not None else None
    except (IndexError, ValueError):
        return None


def start_ticks(pid):
    """When process ``pid`` started (clock ticks since boot), or None: with
    the pid it tells a process from a later one that reused the pid."""
    return _stat_int(pid, 19)


def parent_of(pid):
    """The pid of process ``pid``'s parent, or None."""
    return _stat_int(pid, 1)


def signal_quietly(pid, signum):
    """Send ``signum`` to ``pid``; a process that is gone (or not ours) is no error."""
    try:
        os.kill(pid, signum)
    except (ProcessLookupError, PermissionError):
        pass


def watch_parent(clock, parent_pid, on_gone, interval=1.0):
    """Call ``on_gone()`` once process ``parent_pid`` has exited.

    Returns the started LoopingCall (stop it when no longer needed).
    """
    def check():
        if not process_alive(parent_pid):
            watch.stop()
            on_gone()
    watch = task.LoopingCall(check)
    watch.clock = clock
    watch.start(interval, now=False)
    return watch
