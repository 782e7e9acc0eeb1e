"""Engines that die are started again, with a back-off (issue 13).

:class:`~ipkernel.cluster.LocalCluster` (and so ``ipcluster``) hands its
engine launchers to an :class:`EngineRestarter`.  One daemon thread waits,
in ``select.select()``, for any engine process to end (a pidfd per
process: it works for engines the zygote forked, which are not our
children) or for the next restart to be due; nothing is polled.

What counts as a crash: an engine that exits with a status other than 0
(``os._exit(3)`` in user code, a signal such as SIGKILL or SIGSEGV, a
failed start), while neither the cluster nor its launcher asked it to
stop.  An engine that exits with status 0 was stopped on purpose (``kill``
or ``shutdown`` from a client, SIGTERM) and is left stopped, as are
engines stopped through their launcher and every engine once the cluster
stops.  Engines are not restarted while the controller is not running.

A crashed engine is started again the same way the cluster started it
(forked by the zygote, or as a new process) and registers with the
controller under a new engine id.  :class:`RestartPolicy` says when: at
once after the first crash, then after doubling delays while the engine
keeps dying soon after its start; an engine that keeps failing before it
registers is given up after ``max_start_failures`` tries in a row.
"""
import logging
import os
import select
import subprocess
import threading
import time

from ipkernel.cluster.launcher import LOST_STATUS

logger = logging.getLogger("ipkernel.cluster")

#: How long the restarter waits for the exit status of an engine that ended.
EXIT_REPORT_TIMEOUT = 5.0
#: How long :meth:`EngineRestarter.stop` waits for a restart in progress.
STOP_WAIT = 10.0


class RestartPolicy:
    """When to restart an engine slot that keeps dying.

    A death less than ``quick`` seconds after the engine's start is *quick*.
    The first death of a row is followed by a restart at once; the n-th
    quick death in a row (n >= 2) by a restart after ``base * 2 ** (n - 2)``
    seconds, at most ``cap`` (1, 2, 4, ... 30 s by default).  A death after
    a longer run starts a new row.

    An engine that dies before it registered with the controller failed to
    start (a failing ``--exec-lines``, a broken environment): after
    ``max_start_failures`` of those in a row the slot is given up.  An
    engine that registered and then died (killed by a task, say) is always
    restarted, after the back-off: a task that kills every engine it runs on
    costs restarts, not the engines.
    """

    def __init__(self, quick=30.0, base=1.0, cap=30.0, max_start_failures=5):
        for name, value in (("quick", quick), ("base", base), ("cap", cap)):
            if not isinstance(value, (int, float)) or isinstance(value, bool) or value < 0:
                raise ValueError(f"{name} must be a number of seconds >= 0, not {value!r}")
        if (not isinstance(max_start_failures, int) or isinstance(max_start_failures, bool)
                or max_start_failures < 1):
            raise ValueError(f"max_start_failures must be an int >= 1, "
                             f"not {max_start_failures!r}")
        self.quick = float(quick)
        self.base = float(base)
        self.cap = float(cap)
        self.max_start_failures = max_start_failures

    def __repr__(self):
        return (f"RestartPolicy(quick={self.quick:g}, base={self.base:g}, cap={self.cap:g}, "
                f"max_start_failures={self.max_start_failures})")

    def streak(self, previous, uptime):
        """The death's place in its row: ``previous + 1`` if it was quick, else 1."""
        return previous + 1 if uptime is not None and uptime < self.quick else 1

    def delay(self, streak):
        """Seconds to wait before the restart after death number ``streak`` of a row."""
        if streak <= 1:
            return 0.0
        return min(self.cap, self.base * 2 ** (streak - 2))

    def gives_up(self, start_failures):
        """True when ``start_failures`` deaths in a row before registering end the slot."""
        return start_failures >= self.max_start_failures


class EngineExit:
    """One engine process that ended while the cluster was running.

    ``index`` and ``name`` name the engine slot, ``pid`` and ``status`` the
    process and its exit status (negative: killed by that signal), ``uptime``
    how long it ran (seconds).  ``action`` is ``"restart"`` (``delay``
    seconds later; ``new_pid`` is set once it was started again),
    ``"stopped"`` (status 0 or stopped through its launcher: not
    restarted), ``"given up"``, ``"controller gone"`` or ``"off"`` (restarts
    are turned off); a ``"restart"`` becomes ``"controller gone"`` when
    the controller stopped before it was due.  ``at`` and ``restarted_at``
    are :func:`time.monotonic` times.
    """

    __slots__ = ("index", "name", "pid", "status", "uptime", "action", "delay", "new_pid",
                 "at", "restarted_at")

    def __init__(self, index, name, pid, status, uptime, action, delay=None):
        self.index, self.name, self.pid, self.status = index, name, pid, status
        self.uptime, self.action, self.delay = uptime, action, delay
        self.new_pid = self.restarted_at = None
        self.at = time.monotonic()

    def __repr__(self):
        return (f"<EngineExit {self.name} pid={self.pid} status={self.status} "
                f"action={self.action!r} delay={self.delay} new_pid={self.new_pid}>")


def pidfd_problem():
    """Why exits cannot be watched here (None if they can)."""
    if not hasattr(os, "pidfd_open"):
        return "os.pidfd_open is missing (it needs Linux 5.3 and Python 3.9)"
    try:
        fd = os.pidfd_open(os.getpid())
    except OSError as exc:
        return f"os.pidfd_open does not work here ({exc})"
    os.close(fd)
    return None


class _Slot:
    """One engine launcher as the restarter sees it."""

    def __init__(self, launcher):
        self.launcher = launcher
        self.watched = None   # the process object whose pidfd is open
        self.pidfd = None
        self.streak = 0
        self.start_failures = 0   # deaths in a row before registering
        self.due = None       # monotonic time of the restart, or None
        self.exit = None      # the EngineExit the due restart belongs to
        self.given_up = False


class EngineRestarter:
    """Watches ``engines`` (launchers) and restarts those that crash (see the
    module doc).  ``controller`` is the controller's launcher; ``policy`` a
    :class:`RestartPolicy`.  :attr:`exits` lists what happened."""

    def __init__(self, engines, controller, policy=None):
        self.policy = policy if policy is not None else RestartPolicy()
        self.controller = controller
        self._slots = [_Slot(launcher) for launcher in engines]
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._stopping = False
        self._exits = []
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        self._thread = None

    @property
    def exits(self):
        """The :class:`EngineExit` records so far, oldest first (a copy)."""
        with self._lock:
            return list(self._exits)

    def wait_for(self, predicate, timeout):
        """Wait until ``predicate(exits)`` is true (``exits`` as in
        :attr:`exits`); return its value, or None after ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                value = predicate(list(self._exits))
                remaining = deadline - time.monotonic()
                if value or remaining <= 0:
                    return value or None
                self._changed.wait(remaining)

    def add(self, launcher):
        """Watch one more engine launcher (one started after this restarter)."""
        with self._lock:
            if self._stopping:
                return
            self._slots.append(_Slot(launcher))
        try:
            os.write(self._wake_w, b"x")
        except OSError:
            pass

    def start(self):
        """Start watching (in a daemon thread); returns self."""
        self._thread = threading.Thread(target=self._run, name="ipkernel-engine-restarts",
                                        daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout=STOP_WAIT):
        """Stop watching: nothing is restarted after this returns (a restart
        in progress is finished first)."""
        with self._lock:
            self._stopping = True
            self._changed.notify_all()
        try:
            os.write(self._wake_w, b"x")
        except OSError:
            pass
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout)
            if self._thread.is_alive():
                logger.warning("the engine restarter did not stop within %g s", timeout)
                return
        self._close()

    def _close(self):
        for slot in self._slots:
            self._unwatch(slot)
        for fd in (self._wake_r, self._wake_w):
            try:
                os.close(fd)
            except OSError:
                pass
        self._wake_r = self._wake_w = -1

    # -- the thread -------------------------------------------------------------------

    def _run(self):
        try:
            while True:
                with self._lock:
                    if self._stopping:
                        return
                    now = time.monotonic()
                    for slot in self._slots:
                        if slot.due is not None and slot.due <= now:
                            self._restart(slot)
                        self._watch(slot)
                    timeout = self._next_timeout(time.monotonic())
                    fds = {slot.pidfd: slot for slot in self._slots if slot.pidfd is not None}
                readable, _, _ = select.select([self._wake_r, *fds], [], [], timeout)
                if self._wake_r in readable:
                    try:
                        os.read(self._wake_r, 4096)
                    except BlockingIOError:
                        pass
                for fd in readable:
                    if fd in fds:
                        with self._lock:
                            if not self._stopping:
                                self._ended(fds[fd])
        except Exception:  # noqa: B902 - a broken watcher must say so, not vanish
            logger.exception("the engine restarter failed; engines are no longer restarted")

    def _next_timeout(self, now):
        dues = [slot.due for slot in self._slots if slot.due is not None]
        return max(0.0, min(dues) - now) if dues else None

    def _watch(self, slot):
        # (Re)watch the launcher's current process, e.g. after a restart.
        process = slot.launcher.process
        if process is slot.watched or process is None or slot.due is not None:
            return
        self._unwatch(slot)
        slot.watched = process
        if process.poll() is not None:
            self._ended(slot)
            return
        try:
            slot.pidfd = os.pidfd_open(process.pid)
        except ProcessLookupError:
            self._ended(slot)

    def _unwatch(self, slot):
        if slot.pidfd is not None:
            os.close(slot.pidfd)
            slot.pidfd = None

    def _status(self, slot):
        launcher, process = slot.launcher, slot.watched
        try:
            if launcher.process is process:
                code = launcher.wait(EXIT_REPORT_TIMEOUT)   # also removes its pid file
            else:
                code = process.wait(EXIT_REPORT_TIMEOUT)
        except subprocess.TimeoutExpired:
            code = None
        return LOST_STATUS if code is None else code

    def _ended(self, slot):
        launcher, process = slot.launcher, slot.watched
        self._unwatch(slot)
        status = self._status(slot)
        if launcher.process is not process:
            return   # started again by its owner meanwhile: watched from the next turn
        uptime = (time.time() - launcher.started_at) if launcher.started_at else None
        if getattr(launcher, "stop_requested", False) or status == 0:
            self._record(slot, EngineExit(launcher.index, launcher.name, process.pid, status,
                                          uptime, "stopped"))
            logger.info("%s (pid %s) exited with status %s: stopped on purpose, not restarted",
                        launcher.name, process.pid, status)
            return
        if not self.controller.is_alive():
            self._record(slot, EngineExit(launcher.index, launcher.name, process.pid, status,
                                          uptime, "controller gone"))
            logger.warning("%s (pid %s) exited with status %s; not restarted: the controller "
                           "is not running", launcher.name, process.pid, status)
            return
        self._crashed(slot, process.pid, status, uptime)

    def _crashed(self, slot, pid, status, uptime, why=None, registered=None):
        launcher = slot.launcher
        if registered is None:
            registered = launcher.is_ready()
        slot.start_failures = 0 if registered else slot.start_failures + 1
        slot.streak = self.policy.streak(slot.streak, uptime)
        delay = self.policy.delay(slot.streak)
        what = why or f"exited with status {status}"
        ran = f" after {uptime:.1f} s" if uptime is not None else ""
        if self.policy.gives_up(slot.start_failures):
            slot.given_up = True
            self._record(slot, EngineExit(launcher.index, launcher.name, pid, status, uptime,
                                          "given up"))
            logger.error("%s (pid %s) %s%s: it failed to start (died before registering "
                         "with the controller) %d times in a row; it is not restarted again "
                         "(see its log %s)", launcher.name, pid, what, ran,
                         slot.start_failures, launcher.log_file)
            return
        exit = EngineExit(launcher.index, launcher.name, pid, status, uptime, "restart", delay)
        self._record(slot, exit)
        slot.due, slot.exit = time.monotonic() + delay, exit
        when = "now" if delay == 0 else f"in {delay:g} s"
        logger.warning("%s (pid %s) %s%s; restarting it %s (death %d in a row; slot %d)",
                       launcher.name, pid, what, ran, when, slot.streak, launcher.index)

    def _restart(self, slot):
        launcher, exit = slot.launcher, slot.exit
        slot.due = slot.exit = None
        if launcher.process is not slot.watched:
            return   # its owner started it again meanwhile
        if not self.controller.is_alive():
            exit.action = "controller gone"
            self._changed.notify_all()
            logger.warning("%s is not restarted: the controller is not running", launcher.name)
            return
        try:
            pid = launcher.start()
        except Exception as exc:  # noqa: B902 - any failure to start is a death of the slot
            logger.error("%s could not be started again: %s", launcher.name, exc)
            slot.watched = launcher.process
            self._crashed(slot, None, None, 0.0, why=f"failed to start ({exc})",
                          registered=False)
            return
        exit.new_pid, exit.restarted_at = pid, time.monotonic()
        self._changed.notify_all()
        logger.warning("%s restarted as pid %s; it registers with the controller under a new "
                       "engine id", launcher.name, pid)

    def _record(self, slot, exit):
        self._exits.append(exit)
        self._changed.notify_all()
