"""The soak's disturbances and instruments, as threads of the driver.

:class:`Killer` kill -9s a random engine (or dask worker) every few
seconds; :class:`Sampler` reads a process's RSS every second.  Both stop
when their ``stop`` event is set.
"""
import os
import random
import signal
import threading
import time

from bench import procs


class Killer(threading.Thread):
    """Every ``mean`` seconds on average (uniformly 0.5 to 1.5 times it) kill -9
    one of ``pids()`` (the engines alive now), at most ``max_kills`` times.

    ``replace(pid)``, when given, brings a replacement up for the killed
    engine (for clusters that do not restart engines themselves); it runs in
    this thread, so kills wait for it.  Every pid seen alive is remembered:
    :attr:`restarts` counts the new ones, the replacements of the killed.
    """

    def __init__(self, pids, mean, seed, stop, replace=None, max_kills=None, log=print):
        super().__init__(name="soak-killer", daemon=True)
        self.pids, self.mean, self.stop_event = pids, mean, stop
        self.replace, self.max_kills, self.log = replace, max_kills, log
        self.rng = random.Random(seed)
        self.kills = []      # (seconds since start, pid)
        self.failures = []   # replacements that failed, as text
        self.started = time.monotonic()
        self.seen = set(self._alive())
        self.initial = len(self.seen)

    def _alive(self):
        try:
            return list(self.pids())
        except Exception as exc:  # noqa: B902 - a failed look is retried next time
            self.log(f"  killer: could not list the engines: {exc}")
            return []

    @property
    def restarts(self):
        """Engines (workers) seen alive that were not there at the start."""
        self.seen.update(self._alive())
        return len(self.seen) - self.initial

    def settle(self, expected, timeout):
        """Wait (at most ``timeout`` s) until ``expected`` engines are alive, so
        the restarts of the last kills are counted; returns how many are."""
        deadline = time.monotonic() + timeout
        while True:
            alive = self._alive()
            self.seen.update(alive)
            if len(alive) >= expected or time.monotonic() >= deadline:
                return len(alive)
            time.sleep(0.1)

    def run(self):
        while self.max_kills is None or len(self.kills) < self.max_kills:
            if self.stop_event.wait(self.mean * self.rng.uniform(0.5, 1.5)):
                return
            alive = self._alive()
            self.seen.update(alive)
            if not alive:
                continue
            victim = self.rng.choice(sorted(alive))
            try:
                os.kill(victim, signal.SIGKILL)
            except ProcessLookupError:
                continue
            self.kills.append((round(time.monotonic() - self.started, 3), victim))
            self.log(f"  killed engine pid {victim} ({len(self.kills)} kills)")
            if self.replace is not None:
                try:
                    self.seen.add(self.replace(victim))
                except Exception as exc:  # noqa: B902 - counted and shown in the report
                    self.failures.append(f"{type(exc).__name__}: {exc}"[:200])


class Sampler(threading.Thread):
    """RSS of ``pid()`` (a callable: the process may change) every ``interval``
    seconds, as ``(seconds since start, bytes)`` in :attr:`samples`."""

    def __init__(self, pid, stop, interval=1.0):
        super().__init__(name="soak-sampler", daemon=True)
        self.pid, self.stop_event, self.interval = pid, stop, interval
        self.samples = []
        self.started = time.monotonic()

    def run(self):
        while True:
            value = procs.rss(self.pid())
            if value is not None:
                self.samples.append((round(time.monotonic() - self.started, 3), value))
            if self.stop_event.wait(self.interval):
                return
