"""What a process uses now: resident memory and CPU time (for the dashboard)."""
import os
import resource
import time

__all__ = ["own_usage"]

_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def own_usage():
    """``{"rss": bytes resident now, "cpu": CPU seconds of all its threads}``
    for this process.  Without ``/proc`` (not Linux) ``rss`` is the peak."""
    try:
        with open("/proc/self/statm", "rb") as f:
            rss = int(f.read().split()[1]) * _PAGE
    except (OSError, ValueError, IndexError):
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    return {"rss": rss, "cpu": time.process_time()}
