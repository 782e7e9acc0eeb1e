"""``python -m ipkernel.engine.zygote``: processes forked from one pre-imported process.

Importing the engine or the controller (Twisted, Foolscap, OpenSSL) costs a
good part of a second of CPU.  :class:`~ipkernel.cluster.LocalCluster`
starts this helper once: it imports :mod:`ipkernel.engine.app` and
:mod:`ipkernel.controller.app`, then forks one child per request, and each
child runs the ordinary program with the arguments it would get on the
command line: the engine (:func:`ipkernel.engine.app.main`) or, for a
request with ``"program": "controller"``, the controller
(:func:`ipkernel.controller.app.run`).  So a cluster imports that code once
instead of once in the controller and once more for the engines.

The protocol is JSON, one object a line.  The launcher writes requests to
the zygote's stdin::

    {"token": "ipengine-0", "argv": [...], "log": "/path/ipengine-0.log",
     "cwd": null, "env": null, "program": "engine"}

and reads events from its stdout (the zygote's own prints go to its log)::

    {"event": "ready", "fork": true}           imports done (or "fork": false, "reason")
    {"event": "forked", "token": ..., "pid": N}
    {"event": "refused", "token": ..., "reason": "..."}   start it another way
    {"event": "exited", "pid": N, "status": S}  S as in Popen.returncode

The zygote reaps its children and reports every exit.  It stops on EOF on
stdin, on SIGTERM, or when process ``--parent-pid`` is gone; it then asks
the children still running to stop (SIGTERM) and reports what it reaped.
Its stderr is its log.

Before forking the zygote runs no thread and never runs the reactor; a
child gets a fresh epoll object and waker (:func:`refresh_reactor`),
a new session, its log as stdout/stderr, default signal handlers and a
reseeded :mod:`random`.  If the installed reactor is not one this module
knows how to refresh, the zygote says ``"fork": false`` and forks nothing.
"""
import argparse
import gc
import json
import os
import random
import select
import signal
import sys
import threading
import time
import traceback

from ipkernel.clusterdir import open_private
from ipkernel.pids import process_alive

#: What a child may run (``"program"`` of a request; the default is the engine).
PROGRAMS = ("engine", "controller")
#: How long the zygote waits for its children after asking them to stop.
CHILD_STOP_TIMEOUT = 2.0
#: Interval of the zygote's check that its parent still runs.
PARENT_CHECK = 1.0


# -- the reactor in a forked child ------------------------------------------------------

def refresh_problem(reactor):
    """Why :func:`refresh_reactor` cannot be used on ``reactor`` (None if it can).

    It knows Twisted's epoll reactor that has never run and watches nothing
    but its own pipe waker, in a process with a single thread.
    """
    try:
        from twisted.internet._signals import _UnixWaker
        from twisted.internet.epollreactor import EPollReactor
    except ImportError as exc:
        return f"cannot import the epoll reactor ({exc})"
    kind = f"{type(reactor).__module__}.{type(reactor).__qualname__}"
    if type(reactor) is not EPollReactor:
        return f"the installed reactor is {kind}, not the epoll reactor"
    waker = getattr(reactor, "waker", None)
    if type(waker) is not _UnixWaker or not all(hasattr(waker, a) for a in ("i", "o")):
        return f"the reactor's waker is {type(waker).__qualname__}, not a pipe waker"
    try:
        if reactor.running or reactor._started or reactor._startedBefore:
            return "the reactor has already run"
        if (set(reactor._selectables.values()) != {waker}
                or reactor._internalReaders != {waker} or reactor._reads != {waker.i}
                or reactor._writes):
            return "the reactor watches file descriptors besides its waker"
        polling = reactor._continuousPolling
        if polling._readers or polling._writers:
            return "the reactor polls file descriptors"
        reactor._poller.close
    except AttributeError as exc:
        return f"this Twisted's epoll reactor is not the one known here ({exc})"
    if getattr(reactor, "threadpool", None) is not None:
        return "the reactor has a thread pool"
    if threading.active_count() != 1:
        return f"{threading.active_count()} threads run (forking needs exactly one)"
    return None


def refresh_reactor(reactor):
    """Give ``reactor`` (the same object) its own epoll object and waker.

    Call it in a forked child before anything uses the reactor: the child
    inherited the parent's epoll instance and waker pipe, which are shared
    with the parent, so they are closed here (in the child only) and
    replaced.  ``reactor`` must pass :func:`refresh_problem`.
    """
    from twisted.internet.epollreactor import epoll
    old_poller, old_waker = reactor._poller, reactor.waker
    old_poller.close()
    for fd in (old_waker.i, old_waker.o):
        os.close(fd)
    old_waker.i = old_waker.o = None   # never to be used (or closed) again
    reactor._internalReaders.discard(old_waker)
    reactor._reads.clear()
    reactor._writes.clear()
    reactor._selectables.clear()
    reactor._poller = epoll(1024)
    reactor.waker = None
    reactor.installWaker()


# -- the zygote -------------------------------------------------------------------------

def _new_foolscap_incarnation():
    # Foolscap's log names each process run by a random "incarnation" made at import.
    from foolscap.logging import log as flog
    logger = getattr(flog, "theLogger", None)
    if logger is not None and hasattr(logger, "get_incarnation"):
        logger.incarnation = logger.get_incarnation()


def say(text, who="zygote"):
    """A line in the zygote's log (its stderr); ``who`` names the writer."""
    stamp = time.strftime("%Y-%m-%d %H:%M:%S")
    if "pb://" in text:   # e.g. a request's arguments: no FURL's secret in the log
        from ipkernel.fcutil import redact_furls
        text = redact_furls(text)
    sys.stderr.write(f"{stamp} [{who} {os.getpid()}] {text}\n")
    sys.stderr.flush()


#: The descriptor of the event pipe (main() moves it away from stdout).
_events_fd = 1


def send(event):
    """Write one event line to the launcher (unbuffered)."""
    data = (json.dumps(event) + "\n").encode()
    while data:
        data = data[os.write(_events_fd, data):]


def _noop(signum, frame):
    pass


class Zygote:
    """The request loop (see the module doc).  :meth:`serve` returns None in
    the zygote once it should exit, and the request in a forked child.

    ``events`` receives each event (default :func:`send`, to the launcher);
    a request whose ``"log"`` is None leaves the child's stdout and stderr
    as they are.
    """

    #: How :meth:`say` names this process in its log lines.
    who = "zygote"

    def __init__(self, reactor, parent_pid=None, events=None):
        self.reactor = reactor
        self.parent_pid = parent_pid
        self.events = send if events is None else events
        self.children = {}
        self.stopping = False
        # SIGCHLD and SIGTERM wake select() through this pipe.
        self._wake_r, self._wake_w = os.pipe()
        for fd in (self._wake_r, self._wake_w):
            os.set_blocking(fd, False)
        signal.set_wakeup_fd(self._wake_w)
        signal.signal(signal.SIGCHLD, _noop)
        signal.signal(signal.SIGTERM, self._on_term)

    def say(self, text):
        say(text, self.who)

    def _on_term(self, signum, frame):
        self.stopping = True

    def serve(self):
        pending = b""
        while not self.stopping:
            self.reap()
            try:
                readable, _, _ = select.select([0, self._wake_r], [], [], PARENT_CHECK)
            except InterruptedError:
                continue
            if self._wake_r in readable:
                self._drain_wakeups()
            if 0 in readable:
                data = os.read(0, 65536)
                if not data:
                    self.say("stdin closed: stopping")
                    break
                pending += data
                while b"\n" in pending:
                    line, pending = pending.split(b"\n", 1)
                    if not line.strip():
                        continue
                    try:
                        request = json.loads(line)
                    except ValueError:
                        self.say(f"ignoring a request that is not JSON: {line[:200]!r}")
                        continue
                    if self.fork(request):
                        return request   # in the child
            if self.parent_pid and not process_alive(self.parent_pid):
                self.say(f"parent process {self.parent_pid} is gone: stopping")
                break
        self.stop_children()
        return None

    def fork(self, request):
        """Fork a child for ``request``; True in the child, False in the zygote."""
        token = request.get("token")
        problem = refresh_problem(self.reactor)
        if request.get("program", "engine") not in PROGRAMS:
            problem = f"unknown program {request.get('program')!r}"
        if problem:
            self.say(f"not forking {token}: {problem}")
            self.events({"event": "refused", "token": token, "reason": problem})
            return False
        sys.stdout.flush()
        sys.stderr.flush()
        try:
            pid = os.fork()
        except OSError as exc:
            self.say(f"cannot fork {token}: {exc}")
            self.events({"event": "refused", "token": token, "reason": f"fork failed: {exc}"})
            return False
        if pid == 0:
            try:
                self._become_child(request)
            except BaseException:
                try:
                    traceback.print_exc()
                finally:
                    os._exit(1)
            return True
        self.children[pid] = token
        self.say(f"forked {token} as pid {pid}")
        self.events({"event": "forked", "token": token, "pid": pid})
        return False

    def _become_child(self, request):
        # The child must not share the zygote's session, signals, pipes,
        # reactor descriptors or random state.
        os.setsid()
        signal.set_wakeup_fd(-1)
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        signal.signal(signal.SIGHUP, signal.SIG_DFL)
        os.close(self._wake_r)
        os.close(self._wake_w)
        if _events_fd != 1:
            os.close(_events_fd)
        null_fd = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null_fd, 0)   # replaces the request pipe
        os.close(null_fd)
        if request.get("log") is not None:
            log_fd = open_private(request["log"])
            os.dup2(log_fd, 1)
            os.dup2(log_fd, 2)    # replaces the zygote's log
            os.close(log_fd)
        if request.get("cwd"):
            os.chdir(request["cwd"])
        if request.get("env") is not None:
            os.environ.clear()
            os.environ.update(request["env"])
        refresh_reactor(self.reactor)
        random.seed()
        _new_foolscap_incarnation()
        self.children = {}
        # what ``python -m ipkernel.engine`` (or ``.controller``) would show
        folder = os.path.dirname(__file__)
        if request.get("program") == "controller":
            folder = os.path.join(os.path.dirname(folder), "controller")
        sys.argv = [os.path.join(folder, "__main__.py"), *request["argv"]]

    def reap(self, wait=False):
        """Report every child that exited (``wait``: until none is left)."""
        while self.children:
            try:
                pid, status = os.waitpid(-1, 0 if wait else os.WNOHANG)
            except ChildProcessError:
                self.children.clear()
                return
            if pid == 0:
                return
            token = self.children.pop(pid, None)
            code = os.waitstatus_to_exitcode(status)
            self.say(f"{token or 'child'} (pid {pid}) exited with status {code}")
            self.events({"event": "exited", "pid": pid, "status": code})

    def stop_children(self, timeout=CHILD_STOP_TIMEOUT):
        """Ask the children still running to stop; reap them for up to
        ``timeout`` seconds."""
        for pid in list(self.children):
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + timeout
        while self.children and time.monotonic() < deadline:
            self.reap()
            if self.children:
                select.select([self._wake_r], [], [], max(0.0, deadline - time.monotonic()))
                self._drain_wakeups()
        if self.children:
            self.say(f"children {sorted(self.children)} still run; leaving them")

    def _drain_wakeups(self):
        try:
            while os.read(self._wake_r, 4096):
                pass
        except BlockingIOError:
            pass


def _prepare_children(*programs):
    # Work every child would do first, done once here: the argument parsers,
    # and modules imported only once a program runs.
    for program in programs:
        program.parser()
    import encodings.idna  # noqa: F401  (host names of connections)
    import cryptography.hazmat.backends.openssl  # noqa: F401  (certificates)
    try:  # what an engine waiting for its FURL file uses (see app.wait_for_file)
        from twisted.internet import inotify  # noqa: F401
    except ImportError:
        pass


def main(argv=None):
    """Run the zygote; in a forked child, run the engine.  Returns the exit status."""
    parser = argparse.ArgumentParser(prog="ipengine-zygote", description=__doc__.split("\n")[0])
    parser.add_argument("--parent-pid", type=int, help="stop when process PID exits")
    options = parser.parse_args(argv)
    # Whatever an import prints goes to the log, not into the event pipe.
    global _events_fd
    _events_fd = os.dup(1)
    os.dup2(2, 1)
    # No collections while importing (they would find no garbage); the
    # objects made so far are frozen below, then the collector runs again.
    gc.disable()
    from ipkernel.engine import app
    from ipkernel.controller import app as controller_app
    from twisted.internet import reactor
    _prepare_children(app, controller_app)
    problem = refresh_problem(reactor)
    if problem:
        say(f"engines cannot be forked here: {problem}")
        send({"event": "ready", "fork": False, "reason": problem})
        return 0
    zygote = Zygote(reactor, options.parent_pid)
    # Objects made so far stay out of the collector's way, so the children
    # keep sharing their memory pages with the zygote.
    gc.freeze()
    gc.enable()
    send({"event": "ready", "fork": True})
    request = zygote.serve()
    if request is None:
        return 0
    if request.get("program") == "controller":
        controller_app.run(request["argv"])   # exits through SystemExit
        return 0
    return app.main(request["argv"])


if __name__ == "__main__":
    sys.exit(main())
