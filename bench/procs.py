"""Processes on Linux, read from /proc (psutil is used when installed).

Used for the controller's memory and for the last-resort cleanup
that kills, by pid, the processes this run started and left behind.
"""
import os
import signal

try:
    import psutil
except ImportError:  # the bench extra is optional
    psutil = None


def rss(pid):
    """Resident set size of process ``pid`` in bytes (None if it is gone)."""
    if psutil is not None:
        try:
            return psutil.Process(pid).memory_info().rss
        except psutil.Error:
            return None
    return _proc_kib(pid, "status", "VmRSS:")


def pss(pid):
    """Proportional set size of ``pid`` in bytes: its resident pages, shared ones
    divided among the processes sharing them (None if unknown)."""
    return _proc_kib(pid, "smaps_rollup", "Pss:")


def _proc_kib(pid, name, key):
    """The ``key`` line (in KiB) of ``/proc/<pid>/<name>``, in bytes; None if absent."""
    try:
        with open(f"/proc/{pid}/{name}") as f:
            for line in f:
                if line.startswith(key):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def _parent_map():
    parents = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        # the command name is in parentheses and may contain spaces
        fields = stat[stat.rfind(")") + 2:].split()
        parents[int(entry)] = int(fields[1])
    return parents


def descendants(pid):
    """Pids of all living descendants of ``pid`` (children first)."""
    if psutil is not None:
        try:
            return [p.pid for p in psutil.Process(pid).children(recursive=True)]
        except psutil.Error:
            return []
    parents = _parent_map()
    found, frontier = [], [pid]
    while frontier:
        current = frontier.pop()
        kids = [p for p, parent in parents.items() if parent == current]
        found.extend(kids)
        frontier.extend(kids)
    return found


def tree_memory(pid):
    """``{"rss": ..., "pss": ...}``: the sums over ``pid`` and all its descendants,
    in bytes (a value is None if unknown).  Summed RSS counts pages shared by
    forked processes once per process; summed PSS counts them once."""
    tree = [pid] + descendants(pid)
    out = {}
    for name, read in (("rss", rss), ("pss", pss)):
        values = [read(p) for p in tree]
        out[name] = None if values[0] is None else sum(v or 0 for v in values)
    return out


def command(pid):
    """The command line of ``pid`` (shortened), '' if unknown."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            text = f.read().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return ""
    return text if len(text) <= 100 else text[:97] + "..."


def kill_descendants(pid=None):
    """SIGKILL every living descendant of ``pid`` (default: this process), by pid.

    Returns ``[(pid, command line)]`` of those signalled.
    """
    victims = [(p, command(p)) for p in descendants(os.getpid() if pid is None else pid)]
    for victim, _ in victims:
        try:
            os.kill(victim, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
    return victims
