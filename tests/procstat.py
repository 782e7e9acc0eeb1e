"""A process's size and threads as Linux reports them in ``/proc``.

Importable from any test module (``tests/`` is on ``pythonpath``).
"""
import os


def status_field(pid, field):
    """The number after ``field:`` in ``/proc/<pid>/status`` (kB for sizes)."""
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise AssertionError(f"no {field} for pid {pid}")


def rss_bytes(pid):
    """Resident bytes of process ``pid``."""
    return status_field(pid, "VmRSS") * 1024


def thread_count(pid):
    return status_field(pid, "Threads")


def fd_count(pid):
    return len(os.listdir(f"/proc/{pid}/fd"))
