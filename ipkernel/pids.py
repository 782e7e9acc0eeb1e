"""Process ids: is a process alive (used for pid files and parent watching)."""
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
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except (OSError, IndexError):
        return True


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
