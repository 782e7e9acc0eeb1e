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
user code, so an engine busy in a long computation in Python keeps
answering.  Code that holds the GIL in C (a long regex, compiling a huge
cell) stops that thread too, so before dropping a late engine the monitor
asks the engine's *pulse*, a tiny process beside it
(:mod:`ipkernel.engine.pulse`) whose UDP address and key the engine gave
when registered.  The rule:

* the pulse says some thread of the engine is running: the engine is busy
  and kept (logged once per busy spell), and asked again each period while
  the ping stays unanswered;
* it says the engine is stopped (SIGSTOP), gone, or alive with every thread
  asleep (frozen), or it does not answer within ``pulse_wait`` seconds (the
  engine's host is gone), or the engine has no pulse, or the ping failed
  (its connection is broken): the engine is dropped.

With the defaults (``period=2``, ``timeout=6``, ``pulse_wait=1``) a dead
engine is unregistered at most ``period + timeout + pulse_wait`` = 9 s
after it stopped answering (sooner when the operating system reports the
closed connection, or the pulse answers at once, as for a stopped engine).

If the controller itself was stalled (the beat runs more than two periods
late), no engine is judged on that beat: the answers may be waiting
unread behind the stall.
"""
from twisted.application import service
from twisted.internet import defer, task
from twisted.logger import Logger

from ipkernel.controller.fc import RemoteEngine
from ipkernel.controller.pulseprobe import DEFAULT_WAIT, PulseAddress, PulseProber
from ipkernel.engine.pulse_child import BUSY, STATE_NAMES

log = Logger()

DEFAULT_PERIOD = 2.0
DEFAULT_TIMEOUT = 6.0
#: A ping this much short of the timeout counts as late: the clock's rounding
#: must not cost a whole extra period.
_SLACK = 1e-3


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

    __slots__ = ("remote", "sent_at", "answered_at", "pulse", "probing", "busy_logged",
                 "failed")

    def __init__(self, remote, now):
        self.remote = remote
        self.sent_at = None  # when the ping now waiting for its answer was sent
        self.answered_at = now
        self.pulse = None    # its PulseAddress, once the engine told it
        self.probing = False  # a question to its pulse is waiting for the answer
        self.busy_logged = False
        self.failed = None   # why the waiting ping failed, if it did


class HeartMonitor(service.Service):
    """Unregisters network engines that stop answering pings; see the module doc.

    ``controller`` is a ControllerService; ``clock`` provides
    ``IReactorTime`` (default: the global reactor; tests pass a
    ``twisted.internet.task.Clock``); ``prober`` asks engines' pulses
    (default: a :class:`~ipkernel.controller.pulseprobe.PulseProber` on
    the global reactor), waiting ``pulse_wait`` seconds for an answer.
    """

    name = "HeartMonitor"

    def __init__(self, controller, period=DEFAULT_PERIOD, timeout=DEFAULT_TIMEOUT, clock=None,
                 pulse_wait=DEFAULT_WAIT, prober=None):
        if period <= 0:
            raise ValueError(f"the heartbeat period must be positive, not {period!r}")
        if timeout < period:
            raise ValueError(f"the heartbeat timeout ({timeout!r} s) must be at least one "
                             f"period ({period!r} s)")
        if pulse_wait <= 0:
            raise ValueError(f"the pulse wait must be positive, not {pulse_wait!r}")
        if clock is None:
            from twisted.internet import reactor as clock
        self.controller = controller
        self.period = period
        self.timeout = timeout
        self.clock = clock
        self.pulse_wait = pulse_wait
        self.prober = prober
        self.beats = {}  # engine id -> _Beat
        self._loop = None
        self._last_beat = None

    def startService(self):
        super().startService()
        self._loop = task.LoopingCall(self.beat)
        self._loop.clock = self.clock
        self._loop.start(self.period, now=True).addErrback(
            lambda f: log.failure("the heartbeat loop stopped", f))
        # Ask a new engine for its pulse at once: later it may be too busy to say.
        self.controller.on_register_engine_do(self._registered, True)

    def stopService(self):
        super().stopService()
        self.controller.on_register_engine_do_not(self._registered)
        if self._loop is not None and self._loop.running:
            self._loop.stop()
        self._loop = None
        self.beats.clear()
        if self.prober is not None:
            return self.prober.close()

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
                beat = self._new_beat(engine_id, remote, now)
            if beat.sent_at is None:
                self._ping(engine_id, beat, now)
            elif not stalled and now - beat.sent_at >= self.timeout - _SLACK:
                if beat.failed is not None:
                    # a broken connection: a busy engine behind it helps nobody
                    self._declare_dead(engine_id, beat, now, f"its ping failed ({beat.failed})")
                elif beat.pulse is None:
                    self._declare_dead(engine_id, beat, now)
                elif not beat.probing:
                    self._probe(engine_id, beat)

    def _registered(self, engine_id):
        remote = getattr(self.controller.engines.get(engine_id), "engine", None)
        if isinstance(remote, RemoteEngine):
            self._new_beat(engine_id, remote, self.clock.seconds())

    def _new_beat(self, engine_id, remote, now):
        beat = self.beats[engine_id] = _Beat(remote, now)
        try:
            host = self.controller.engine_info(engine_id).get("ip")
        except (AttributeError, KeyError):
            host = None
        d = defer.maybeDeferred(remote.rref.callRemote, "pulse")

        def told(offer):
            beat.pulse = PulseAddress.from_offer(host, offer)

        def not_told(failure):
            log.debug("engine {id} has no pulse ({why})", id=engine_id,
                      why=failure.getErrorMessage())
        d.addCallbacks(told, not_told)
        return beat

    def _probe(self, engine_id, beat):
        if self.prober is None:
            self.prober = PulseProber()
        beat.probing = True
        ping = beat.sent_at
        d = self.prober.ask(beat.pulse, self.pulse_wait)

        def answered(outcome):
            beat.probing = False
            if self.beats.get(engine_id) is not beat or beat.sent_at != ping:
                return  # unregistered, or its ping was answered meanwhile
            now = self.clock.seconds()
            state = None if outcome is None else outcome[0]
            if state == BUSY:
                if not beat.busy_logged:
                    beat.busy_logged = True
                    log.info("engine {id} is busy in code that holds the GIL: no answer to a "
                             "ping for {silent:.1f} s, but its pulse says it is running; "
                             "keeping it", id=engine_id, silent=now - ping)
                return
            verdict = ("its pulse did not answer" if state is None
                       else f"its pulse says it is {STATE_NAMES.get(state, 'unknown')}")
            self._declare_dead(engine_id, beat, now, verdict)
        d.addCallback(answered).addErrback(
            lambda f: log.failure("asking the pulse of engine {id} failed", f, id=engine_id))

    def _ping(self, engine_id, beat, now):
        beat.sent_at = now
        beat.failed = None
        d = defer.maybeDeferred(beat.remote.ping)
        d.addCallbacks(self._answered, self._ping_failed, callbackArgs=(beat,),
                       errbackArgs=(engine_id, beat))

    def _answered(self, _, beat):
        beat.sent_at = None
        beat.answered_at = self.clock.seconds()
        beat.busy_logged = False

    def _ping_failed(self, failure, engine_id, beat):
        # A failed ping counts as unanswered (``sent_at`` stays set): either
        # the connection is gone (the disconnect notifier usually acts
        # first) or the engine cannot prove it is alive, and the timeout
        # decides.
        beat.failed = failure.getErrorMessage() or failure.type.__name__
        log.debug("ping of engine {id} failed: {why}", id=engine_id, why=beat.failed)

    def _declare_dead(self, engine_id, beat, now, verdict="it has no pulse to ask"):
        del self.beats[engine_id]
        log.warn("engine {id} did not answer a ping for {silent:.1f} s (timeout {timeout:g} s) "
                 "and {verdict}; unregistering it", id=engine_id, silent=now - beat.sent_at,
                 timeout=self.timeout, verdict=verdict)
        queued = self.controller.engines.get(engine_id)
        if queued is not None and getattr(queued, "engine", None) is beat.remote:
            self.controller.unregister_engine(engine_id)
        drop_connection(beat.remote.rref)
