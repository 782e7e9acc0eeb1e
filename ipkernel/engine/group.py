"""``ipengine -n N``: N engines on this host, forked from one process.

The process imports the engine code once, then forks N children, each an
ordinary engine (:func:`ipkernel.engine.app.main` with the same arguments)
that registers with the controller on its own and gets its own engine id.
This is how to start several engines on a host that ipcluster does not
reach (ssh by hand, a batch script, a container): the engines start
sooner, share the memory of the imported code, and answer small calls
faster than as many separate ``ipengine`` processes (processes forked from
one parent are cheaper to switch between).

* Each engine logs to ``--logfile`` with ``-K`` (its number 0..N-1) before
  the suffix (``ipengine.log`` gives ``ipengine-0.log``, ...), or, without
  ``--logfile``, to the group's stderr.  The group's own lines (forks,
  exits) go to its stderr.
* The group stops its engines (SIGTERM, then SIGKILL after
  :data:`STOP_TIMEOUT` seconds) on SIGTERM, SIGINT (Ctrl-C) or SIGHUP, and
  when the process named by ``--parent-pid`` (``--exit-with-parent``: its
  parent) exits; the engines stop by themselves when the group is gone.
  An engine that exits is not started again (ipcluster restarts engines);
  the group exits once none runs, with status 0 when every engine exited
  with 0, else the first other status (128 + N for an engine killed by
  signal N, as a shell reports it).
* It needs Linux and Twisted's epoll reactor (the zygote's conditions,
  :func:`ipkernel.engine.zygote.refresh_problem`); elsewhere it says so and
  exits with status 1: start N ``ipengine`` processes instead.
"""
import gc
import os
import select
import signal
from pathlib import Path

from ipkernel.engine import zygote

#: Seconds the engines have to stop after SIGTERM before they are killed.
STOP_TIMEOUT = 10.0


class GroupError(Exception):
    """The engines cannot be started as a group (the message says why)."""


def check_options(options):
    """Raise :class:`GroupError` when ``options`` (of ``ipengine``) cannot
    be given to several engines at once."""
    n = options.engines
    if options.engine_id is not None:
        raise GroupError(f"--engine-id names one engine; with -n {n} leave it out (the "
                         f"controller gives each engine its own id)")
    if options.mpi:
        raise GroupError(f"--mpi engines are started by mpiexec, one per rank; leave out "
                         f"-n {n} and use mpiexec -n {n}")
    from ipkernel import credentials
    if os.environ.get(credentials.CREDENTIAL_ENV):
        raise GroupError(f"${credentials.CREDENTIAL_ENV} registers one engine; start "
                         f"{n} ipengine processes, each with its own credential, or use "
                         f"the engine FURL file")


def refuse_group_args(args, where):
    """Raise ValueError when ``args`` (ipengine arguments given to a launcher
    that starts one engine per process, named ``where``) ask for a group."""
    for a in map(str, args):
        if a in ("-n", "--engines") or a.startswith("--engines=") or (
                a.startswith("-n") and a[2:].isdigit()):
            raise ValueError(f"{where} starts and watches one engine per process: leave "
                             f"{a!r} out of its engine arguments and ask it for more engines "
                             f"(ipengine -n is for starting engines by hand)")


def engine_log(logfile, k):
    """The log file of engine ``k`` of a group logging to ``logfile`` (None: stderr)."""
    if logfile is None:
        return None
    path = Path(logfile)
    return str(path.with_name(f"{path.stem}-{k}{path.suffix}"))


class EngineGroup(zygote.Zygote):
    """Forks the engines of a group and watches them (see the module doc)."""

    who = "ipengine group"

    def __init__(self, reactor, parent_pid=None):
        super().__init__(reactor, parent_pid, events=self._event)
        self.statuses = []
        signal.signal(signal.SIGINT, self._on_term)
        signal.signal(signal.SIGHUP, self._on_term)

    def _event(self, event):
        if event["event"] == "exited":
            self.statuses.append(event["status"])
            if self.children:
                self.say(f"{len(self.children)} engine(s) still run")

    def start(self, n, argv, logfile):
        """Fork ``n`` engines; in the parent, return None once they are
        forked, in each child the argument list its engine runs with."""
        for k in range(n):
            child_argv = [*argv, "-n", "1", "--parent-pid", str(os.getpid())]
            log = engine_log(logfile, k)
            if log is not None:
                child_argv += ["--logfile", log]
            request = {"token": f"engine {k}", "argv": child_argv, "log": None}
            if self.fork(request):
                return child_argv
            if len(self.children) != k + 1:
                raise GroupError(f"could not fork engine {k} (see the lines above)")
        return None

    def watch(self):
        """Wait while engines run; stop them when asked or when the parent is
        gone; return the group's exit status."""
        while self.children and not self.stopping:
            try:
                select.select([self._wake_r], [], [], zygote.PARENT_CHECK)
            except InterruptedError:
                pass
            self._drain_wakeups()
            self.reap()
            if self.parent_pid and not zygote.process_alive(self.parent_pid):
                self.say(f"parent process {self.parent_pid} is gone: stopping the engines")
                break
        self.stop()
        status = next((s for s in self.statuses if s != 0), 0)
        return status if status >= 0 else 128 - status  # killed by a signal: as a shell says

    def stop(self):
        """SIGTERM to the engines still running; SIGKILL to those left after
        :data:`STOP_TIMEOUT` seconds."""
        if not self.children:
            return
        self.say(f"stopping {len(self.children)} engine(s)")
        self.stop_children(STOP_TIMEOUT)
        for pid in list(self.children):
            self.say(f"engine pid {pid} did not stop within {STOP_TIMEOUT:g} s: killing it")
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.reap(wait=True)


def run(options, argv):
    """Run ``ipengine`` ``argv`` (parsed: ``options``) as a group of
    ``options.engines`` engines.  Returns the exit status in the group; in
    each forked child it runs that engine and returns its exit status."""
    try:
        check_options(options)
    except GroupError as exc:
        zygote.say(f"ipengine: {exc}", "ipengine group")
        return 2
    # No collections while importing; what exists once the imports are done
    # is frozen, so the engines keep sharing those pages.
    gc.disable()
    from ipkernel.engine import app
    from twisted.internet import reactor
    zygote._prepare_children(app)
    problem = zygote.refresh_problem(reactor)
    if problem:
        gc.enable()
        zygote.say(f"ipengine: cannot fork {options.engines} engines here ({problem}); "
                   f"start {options.engines} ipengine processes instead", "ipengine group")
        return 1
    parent = options.parent_pid or (os.getppid() if options.exit_with_parent else None)
    group = EngineGroup(reactor, parent)
    gc.freeze()
    gc.enable()
    try:
        child_argv = group.start(options.engines, argv, options.logfile)
    except GroupError as exc:
        group.say(f"ipengine: {exc}")
        group.stop()
        return 1
    if child_argv is not None:  # a forked engine
        return app.main(child_argv)
    group.say(f"started {options.engines} engines (pids "
              f"{' '.join(map(str, group.children))})")
    return group.watch()

