"""Liveness: the controller pings its network engines and drops silent ones.

:class:`HeartMonitor` is a Service.  Every ``period`` seconds it sends
``ping`` to each registered engine that lives in another process (its
queued engine wraps a :class:`~ipkernel.controller.fc.RemoteEngine`), at
most one ping per engine at a time.  An engine whose ping has gone
unanswered for ``timeout`` seconds is declared dead: it is unregistered
(every command waiting on it fails with ``EngineError`` naming it) and its
connection is dropped, so an engine that was only frozen reconnects and
registers again when it wakes up.

Engines answer ``ping`` from their network thread, not the thread running
user code, so an engine busy in a long computation keeps answering and is
kept.  With the defaults (``period=2``, ``timeout=6``) a dead engine is
unregistered at most ``period + timeout`` = 8 s after it stopped answering
(sooner when the operating system reports the closed connection).

If the controller itself was stalled (the beat runs more than two periods
late), no engine is judged on that beat: the answers may be waiting
unread behind the stall.
"""
from twisted.application import service
from twisted.internet import defer, task
from twisted.logger import Logger

from ipkernel.controller.fc import RemoteEngine

log = Logger()

DEFAULT_PERIOD = 2.0
DEFAULT_TIMEOUT = 6.0


def drop_connection(rref):
    """Close the connection behind a Foolscap RemoteReference at once.

    Does nothing for objects that are not connected RemoteReferences (test
    fakes that have no ``tracker``).  Returns True if a connection was closed.
    """
    broker = getattr(getattr(rref, "tracker", None), "broker", None)
    transport = getattr(broker, "transport", None)
    if transport is None:
        return False
    abort = getattr(transport, "abortConnection", None) or transport.loseConnection
    try:
        abort()
    except Exception:
        log.failure("could not close the connection of a dead engine")
        return False
    return True


class _Beat:
    """What the monitor knows about one registered remote engine."""

    __slots__ = ("remote", "sent_at", "answered_at")

    def __init__(self, remote, now):
        self.remote = remote
        self.sent_at = None  # when the ping now waiting for its answer was sent
        self.answered_at = now


class HeartMonitor(service.Service):
    """Unregisters network engines that stop answering pings; see the module doc.

    ``controller`` is a ControllerService; ``clock`` provides
    ``IReactorTime`` (default: the global reactor; tests pass a
    ``twisted.internet.task.Clock``).
    """

    name = "HeartMonitor"

    def __init__(self, controller, period=DEFAULT_PERIOD, timeout=DEFAULT_TIMEOUT, clock=None):
        if period <= 0:
            raise ValueError(f"the heartbeat period must be positive, not {period!r}")
        if timeout < period:
            raise ValueError(f"the heartbeat timeout ({timeout!r} s) must be at least one "
                             f"period ({period!r} s)")
        if clock is None:
            from twisted.internet import reactor as clock
        self.controller = controller
        self.period = period
        self.timeout = timeout
        self.clock = clock
        self.beats = {}  # engine id -> _Beat
        self._loop = None
        self._last_beat = None

    def startService(self):
        super().startService()
        self._loop = task.LoopingCall(self.beat)
        self._loop.clock = self.clock
        self._loop.start(self.period, now=True).addErrback(
            lambda f: log.failure("the heartbeat loop stopped", f))

    def stopService(self):
        super().stopService()
        if self._loop is not None and self._loop.running:
            self._loop.stop()
        self._loop = None
        self.beats.clear()

    def _remote_engines(self):
        for engine_id, queued in list(self.controller.engines.items()):
            remote = getattr(queued, "engine", None)
            if isinstance(remote, RemoteEngine):
                yield engine_id, remote

    def beat(self):
        """One round: forget gone engines, judge silent ones, ping the rest."""
        now = self.clock.seconds()
        stalled = self._last_beat is not None and now - self._last_beat > 2 * self.period
        self._last_beat = now
        current = dict(self._remote_engines())
        for engine_id in [i for i, b in self.beats.items() if current.get(i) is not b.remote]:
            del self.beats[engine_id]
        for engine_id, remote in current.items():
            beat = self.beats.get(engine_id)
            if beat is None:
                beat = self.beats[engine_id] = _Beat(remote, now)
            if beat.sent_at is None:
                self._ping(engine_id, beat, now)
            elif not stalled and now - beat.sent_at >= self.timeout:
                self._declare_dead(engine_id, beat, now)

    def _ping(self, engine_id, beat, now):
        beat.sent_at = now
        d = defer.maybeDeferred(beat.remote.ping)
        d.addCallbacks(self._answered, self._ping_failed, callbackArgs=(beat,),
                       errbackArgs=(engine_id, beat))

    def _answered(self, _, beat):
        beat.sent_at = None
        beat.answered_at = self.clock.seconds()

    def _ping_failed(self, failure, engine_id, beat):
        # A failed ping counts as unanswered (``sent_at`` stays set): either
        # the connection is gone (the disconnect notifier usually acts
        # first) or the engine cannot prove it is alive, and the timeout
        # decides.
        log.debug("ping of engine {id} failed: {why}", id=engine_id,
                  why=failure.getErrorMessage())

    def _declare_dead(self, engine_id, beat, now):
        del self.beats[engine_id]
        log.warn("engine {id} did not answer a ping for {silent:.1f} s (timeout {timeout:g} s); "
                 "unregistering it", id=engine_id, silent=now - beat.sent_at, timeout=self.timeout)
        queued = self.controller.engines.get(engine_id)
        if queued is not None and getattr(queued, "engine", None) is beat.remote:
            self.controller.unregister_engine(engine_id)
        drop_connection(beat.remote.rref)
