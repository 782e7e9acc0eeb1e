"""Engines connect out to the controller and register; they reconnect by themselves.

:class:`EngineConnector` keeps an engine registered.  It dials the FURL
itself (not with a Foolscap Reconnector) so that it can say why a
connection fails, at once and in words an operator can act on:

* While the controller cannot be reached it logs one line at the first
  failure ("cannot reach the controller at HOST:PORT from FURL file F:
  connection refused; retrying for up to 60 s ..."), then one line a
  minute (``STILL_TRYING_EVERY``), or when the reason changes.
* Before the first registration, with ``unreachable_timeout``: when
  nothing at all answered at any of the FURL's locations within that many
  seconds (every TCP connection refused, no route, or no answer), the
  connector ends (``registered`` fails with :class:`ControllerUnreachable`,
  naming the locations tried and what to check) instead of waiting out
  ``register_timeout``.  A controller that accepted a TCP connection but is
  slow to negotiate or register is left to ``register_timeout``.
* When the controller's Tub answers but does not know the FURL's secret,
  or another Tub listens at its address, the FURL is *stale* (from an
  older run of ``ipcontroller``).  Before the first registration that ends
  the connector at once (``registered`` fails with :class:`StaleFurl`),
  after a last look at the FURL file; later it is logged and the engine
  waits for a new FURL in its file.
* When the engine was given a FURL *file*, it watches that file while
  disconnected: a controller restarted without ``-r`` writes a new FURL
  there, and the engine follows it.
* A controller that stops deliberately says so first (``controller_stopping``):
  the engine then waits ``stop_wait`` seconds for it to come back (a
  restart), and otherwise gives up with status 0.  A connection lost
  without that notice (a crash, the network) is retried for
  ``reconnect_timeout`` seconds, then given up with status 1.  Giving up
  calls ``on_gave_up(status, message)``.
"""
import os
from pathlib import Path

from foolscap.api import RemoteException
from twisted.application import service
from twisted.internet import defer, error as net_error, task
from twisted.logger import Logger

from ipkernel import fcutil
from ipkernel.datachannel import DataChannelPeer
from ipkernel.engine.fc import FCEngineFromService
from ipkernel.lane import join_lane, lane_allowed
from ipkernel.engine.outlet import LaneOrFoolscap, OutputOutlet
from ipkernel.transport.link import Link

log = Logger()

#: Delay before the second attempt, its growth per failure, and its bound (seconds).
FIRST_RETRY = 0.5
RETRY_FACTOR = 2.0
MAX_RECONNECT_DELAY = 10.0
#: Seconds one attempt (TCP, TLS and Foolscap negotiation) may take.
ATTEMPT_TIMEOUT = 20.0
#: Seconds without an answer after which a first attempt is reported while it goes on.
SLOW_ATTEMPT = 5.0
#: While attempts keep failing for the same reason: one log line this often (seconds).
STILL_TRYING_EVERY = 60.0
#: Seconds a stale FURL file is looked at again (a controller may be rewriting it).
STALE_RECHECK = 3.0
#: Seconds between looks at the FURL file while disconnected.
FURL_FILE_POLL = 2.0
#: Defaults of ``ipengine --reconnect-timeout`` and ``--stop-wait`` (seconds).
DEFAULT_RECONNECT_TIMEOUT = 3600.0
DEFAULT_STOP_WAIT = 30.0


class StaleFurl(Exception):
    """The controller reached does not know the engine's FURL."""


class RegistrationTimeout(Exception):
    """The first registration did not succeed within ``register_timeout``."""


class ControllerUnreachable(RegistrationTimeout):
    """Nothing answered at the FURL's locations within ``unreachable_timeout``."""


def where(furl):
    """``HOST:PORT`` (or several, comma-separated) that ``furl`` points to, no secret."""
    hints = furl.split("@", 1)[-1].split("/", 1)[0]
    return ",".join(h[4:] if h.startswith("tcp:") else h for h in hints.split(","))


def explain(failure):
    """``(stale, why)`` of a failed connection attempt: ``stale`` when the
    address answered but the FURL is not (any longer) valid there."""
    if failure.check(RemoteException) and "unable to find reference" in str(failure.value):
        return True, ("the controller there does not know this FURL's secret (the FURL is "
                      "stale: from an older run of ipcontroller)")
    text = failure.getErrorMessage()
    if "unknown TubID" in text:
        return True, ("another controller (a different certificate) listens there (the FURL "
                      "is stale: from an older run of ipcontroller)")
    if failure.check(net_error.ConnectionRefusedError):
        return False, "connection refused"
    if failure.check(net_error.NoRouteError):
        return False, "no route to host"
    if failure.check(net_error.TCPTimedOutError):
        return False, "the TCP connection timed out"
    if failure.check(defer.CancelledError, defer.TimeoutError):
        return False, f"no answer within {ATTEMPT_TIMEOUT:g} s"
    if failure.check(net_error.DNSLookupError):
        return False, f"the host name cannot be resolved ({fcutil.redact_furls(text)})"
    return False, fcutil.redact_furls(f"{failure.type.__name__}: {text}")


class _StopWith(service.Service):
    """A child service of the connector's Tub: stopping the Tub stops the connector."""

    def __init__(self, connector):
        self.connector = connector

    def stopService(self):
        super().stopService()
        self.connector.stop()


def _seconds(value):
    return f"for up to {value:g} s" if value and value > 0 else "forever"


class EngineConnector:
    """Registers ``service`` (an EngineService) with the controller at ``furl_or_file``.

    ``registered`` is a Deferred that fires with the engine id after the
    first registration (or fails: :class:`StaleFurl`,
    :class:`RegistrationTimeout` after ``register_timeout`` seconds, or the
    controller's refusal); ``on_registered(id)`` is called after every one.
    ``reconnect_timeout``, ``stop_wait`` and ``on_gave_up`` are described
    in the module doc (None or 0: no limit).

    With a ``credential`` (see :mod:`ipkernel.credentials`) the
    FURL is the controller's gate: the engine registers with the credential,
    then with the rejoin credential the controller answers (kept in memory
    only) each time it registers again.
    """

    def __init__(self, tub, service, furl_or_file, on_registered=None, clock=None, *,
                 register_timeout=None, reconnect_timeout=None, stop_wait=DEFAULT_STOP_WAIT,
                 on_gave_up=None, credential=None, unreachable_timeout=None):
        if clock is None:
            from twisted.internet import reactor as clock
        self.tub = tub
        self.service = service
        self.furl = fcutil.find_furl(furl_or_file)
        text = os.fspath(furl_or_file)
        self.furl_file = None if text.startswith("pb://") else Path(text).expanduser()
        self._clock = clock
        self._file_watch = None
        self.on_registered = on_registered
        self.on_gave_up = on_gave_up
        self.register_timeout = register_timeout
        self.reconnect_timeout = reconnect_timeout
        self.stop_wait = stop_wait
        self.unreachable_timeout = unreachable_timeout
        self._unreachable = None    # the delayed give-up while nothing answered
        self._connections_before = 0
        self._credential = credential
        self.registered = defer.Deferred()
        # register_engine answered once: a loss from then on is a lost
        # controller, also while channels_joined (which fires registered) is
        # on its way
        self._given_id = False
        self._running = False
        self._retry = None          # the delayed next attempt
        self._attempting = False
        self._attempt_d = None
        self._delay = FIRST_RETRY
        self._deadline = None       # the delayed give-up of the current disconnected spell
        self._spell_start = None
        self._noted = None          # (why, when) of the last failure logged
        self._stale_since = None
        self._stopping_notice = False
        self._reference = FCEngineFromService(service)
        self._reference.on_controller_stopping = self._controller_stopping
        #: The Link to the controller while connected: its Foolscap reference,
        #: the lane the commands arrive on and the data channel, once joined.
        self.link = None

    @property
    def controller(self):
        """The controller's RemoteReference while connected, else None."""
        return None if self.link is None else self.link.rref

    @property
    def lane(self):
        """The lane the controller's commands arrive on, once joined (else None)."""
        return None if self.link is None else self.link.lane

    @property
    def _source(self):
        if self.furl_file is not None:
            return f"FURL file {self.furl_file}"
        return f"the FURL {fcutil.redacted_furl(self.furl)}"

    # -- connecting -----------------------------------------------------------------

    def start(self):
        """Start connecting (and reconnecting); return ``self.registered``.
        Stopping the Tub stops the connector too."""
        self._running = True
        _StopWith(self).setServiceParent(self.tub)
        self._begin_spell(self.register_timeout, self._first_too_late)
        self._arm_unreachable()
        self._attempt()
        return self.registered

    def stop(self):
        self._running = False
        self._cancel(self._retry)
        self._cancel(self._deadline)
        self._cancel(self._unreachable)
        self._retry = self._deadline = self._unreachable = None
        if self._attempt_d is not None:
            self._attempt_d.cancel()   # (its failure is ignored: not running)
        self.close_link()
        self._stop_file_watch()

    @staticmethod
    def _cancel(call):
        if call is not None and call.active():
            call.cancel()

    def _begin_spell(self, limit, give_up):
        """A time without a controller begins: give up after ``limit`` s (None/0: never)."""
        self._spell_start = self._clock.seconds()
        self._noted = None
        self._stale_since = None
        self._delay = FIRST_RETRY
        self._cancel(self._deadline)
        self._deadline = self._clock.callLater(limit, give_up) if limit and limit > 0 else None
        if self.furl_file is not None and self._file_watch is None:
            self._file_watch = task.LoopingCall(self._check_furl_file)
            self._file_watch.clock = self._clock
            self._file_watch.start(FURL_FILE_POLL, now=False)

    def _arm_unreachable(self):
        """Before the first registration: give up after ``unreachable_timeout``
        s if no TCP connection to the controller's locations was made."""
        self._cancel(self._unreachable)
        self._unreachable = None
        limit = self.unreachable_timeout
        if limit and limit > 0 and not self.registered.called:
            self._connections_before = fcutil.tcp_connections(self.tub)
            self._unreachable = self._clock.callLater(limit, self._nothing_answered)

    def _locations(self):
        return ", ".join(f"tcp:{location}" for location in fcutil.furl_locations(self.furl))

    def _nothing_answered(self):
        self._unreachable = None
        if not self._running or self.registered.called:
            return
        if fcutil.tcp_connections(self.tub) > self._connections_before:
            return   # something answered: slow rather than absent (register_timeout decides)
        why = self._noted[0] if self._noted is not None else "no answer"
        self._give_up_first(ControllerUnreachable(
            f"cannot reach the controller: nothing answered at {self._locations()} (from "
            f"{self._source}) within {self.unreachable_timeout:g} s (last: {why}). Is "
            f"ipcontroller running there? Does its --engine-ip/--engine-location give an "
            f"address this host can reach (a FURL naming only 127.0.0.1 works on the "
            f"controller's host alone)? Does a firewall block the port? (ipengine "
            f"--unreachable-timeout sets this wait; 0 waits up to --register-timeout)"))

    def _attempt(self):
        self._retry = None
        if not self._running or self._attempting:
            return
        self._attempting = True
        slow = self._clock.callLater(SLOW_ATTEMPT, self._slow_attempt)
        d = self._attempt_d = self.tub.getReference(self.furl)
        d.addTimeout(ATTEMPT_TIMEOUT, self._clock)
        d.addBoth(lambda outcome: (self._cancel(slow), outcome)[1])
        d.addBoth(self._attempted)
        d.addCallbacks(self._connected, self._attempt_failed)
        d.addErrback(lambda f: log.failure("while connecting to the controller", f))

    def _slow_attempt(self):
        """An attempt has had no answer for SLOW_ATTEMPT s: say so before it times out."""
        if self._running and self._noted is None:
            self._note(f"no answer yet after {SLOW_ATTEMPT:g} s (still trying; is the address "
                       f"right and reachable from here?)")

    def _attempted(self, outcome):
        self._attempting = False
        self._attempt_d = None
        return outcome

    def _schedule(self, delay=None):
        if not self._running or self._retry is not None:
            return
        if delay is None:
            delay, self._delay = self._delay, min(self._delay * RETRY_FACTOR, MAX_RECONNECT_DELAY)
        self._retry = self._clock.callLater(delay, self._attempt)

    def _attempt_failed(self, failure):
        if not self._running:
            return
        stale, why = explain(failure)
        if stale and self._stale(why):
            return
        if not stale:
            self._stale_since = None
        self._note(why)
        self._schedule()

    def _stale(self, why):
        """Handle a stale answer; True when the connector gave up (first registration)."""
        if self.registered.called:
            self._note(f"{why}; waiting for a new FURL in {self._source}"
                       if self.furl_file is not None else why)
            self._schedule()
            return True
        now = self._clock.seconds()
        if self._stale_since is None:
            self._stale_since = now
        if self.furl_file is not None and now - self._stale_since < STALE_RECHECK:
            # the controller may be writing a new FURL there right now: look again soon
            self._schedule(FIRST_RETRY)
            return True
        self._give_up_first(StaleFurl(
            f"the FURL in {self._source} is stale: {where(self.furl)} answered, but {why}. "
            f"Use the FURL file of the ipcontroller now running (restart it with -r to keep "
            f"its FURLs across restarts)"))
        return True

    def _note(self, why):
        """Log a failed attempt: the first of a spell, a new reason, or one a minute."""
        now = self._clock.seconds()
        if self._noted is not None and self._noted[0] == why \
                and now - self._noted[1] < STILL_TRYING_EVERY:
            return
        first = self._noted is None
        self._noted = (why, now)
        elapsed = now - self._spell_start
        if not self._known:
            limit = _seconds(self.register_timeout)
            if self._unreachable is not None and self._unreachable.active():
                limit += (f", or {self.unreachable_timeout:g} s if nothing answers at all "
                          f"(--unreachable-timeout)")
            if first:
                log.warn("cannot reach the controller at {where} from {source}: {why}; "
                         "retrying {limit} (is ipcontroller running? was it restarted with "
                         "new FURLs?)", where=where(self.furl), source=self._source, why=why,
                         limit=limit)
            else:
                log.warn("still cannot reach the controller at {where} after {t:.0f} s: {why}",
                         where=where(self.furl), t=elapsed, why=why)
            return
        limit = self.stop_wait if self._stopping_notice else self.reconnect_timeout
        left = "" if not limit else f"; giving up in {max(0.0, limit - elapsed):.0f} s"
        log.warn("reconnecting to the controller at {where} ({t:.0f} s so far): {why}{left}",
                 where=where(self.furl), t=elapsed, why=why, left=left)

    def _first_too_late(self):
        self._deadline = None
        why = self._noted[0] if self._noted is not None else "no answer"
        self._give_up_first(RegistrationTimeout(
            f"could not register with the controller at {where(self.furl)} (from "
            f"{self._source}) within {self.register_timeout:g} s (last: {why}): is ipcontroller "
            f"running and reachable, and is the FURL file from its current run?"))

    def _give_up_first(self, exc):
        self.stop()
        if not self.registered.called:
            self.registered.errback(exc)

    # -- connected ------------------------------------------------------------------

    def _connected(self, rref):
        if not self._running:
            try:
                rref.tracker.broker.transport.loseConnection()
            except AttributeError:
                pass
            return
        self._stop_file_watch()
        self._cancel(self._deadline)
        self._cancel(self._unreachable)
        self._deadline = self._unreachable = None
        if self._known:
            log.info("reconnected to the controller at {where} after {t:.0f} s",
                     where=where(self.furl), t=self._clock.seconds() - self._spell_start)
        self._stopping_notice = False
        self.close_link()  # (a stale one, if the old connection's loss is not told yet)
        self.link = Link(rref)
        self._reference.link = self.link
        rref.notifyOnDisconnect(self._disconnected, self.link)
        properties = self.service.properties.copy()
        credential = () if self._credential is None else (self._credential,)
        d = rref.callRemote("register_engine", *credential, self._reference, self.service.id,
                            os.getpid(), properties)
        d.addCallbacks(self._registered, self._failed)

    @property
    def _known(self):
        """True once a controller gave this engine an id (a loss is then a lost controller)."""
        return self._given_id or self.registered.called

    def _registered(self, reply):
        engine_id = reply["id"]
        self.service.id = engine_id
        self._given_id = True
        if self._credential is not None and reply.get("rejoin"):
            self._credential = reply["rejoin"]   # the launch credential is used up
        log.info("registered with the controller as engine {id}", id=engine_id)
        inlet = reply.get("output")
        self._set_output(None if inlet is None else LaneOrFoolscap(self.link, inlet))
        joins = []
        if reply.get("lane") and self.controller is not None:
            joins.append(self._join_lane(*reply["lane"]))
        if reply.get("data") and self.controller is not None:
            joins.append(self._join_data_channel(*reply["data"]))
        if joins:
            # the controller counts this engine once its channels are joined
            rref = self.controller
            d = defer.DeferredList(joins)
            d.addCallback(lambda _: rref.callRemote("channels_joined", engine_id))
            d.addCallbacks(lambda _: self._announce(engine_id), self._not_counted,
                           errbackArgs=(engine_id,))
            return d
        self._announce(engine_id)

    def _not_counted(self, failure, engine_id):
        # the connection went in the meantime: the reconnection registers anew
        log.warn("engine {id} could not tell the controller it joined its channels ({why})",
                 id=engine_id, why=failure.getErrorMessage())

    def _join_lane(self, *offer):
        link = self.link
        link.close_lane()
        if not lane_allowed(getattr(link.rref.getPeer(), "host", None)):
            return defer.succeed(None)  # no address to dial: commands come through Foolscap

        def joined(lane):
            if self.link is link:
                link.lane = lane
            else:  # the connection it was for has gone meanwhile
                lane.close()
        # off this host the lane runs TLS: the certificate must be the FURL's tub's
        return join_lane(link.rref, offer, local=self._reference,
                         tubid=fcutil.tubid_of_furl(self.furl)).addCallback(joined)

    def _set_output(self, target):
        """Publish user code's output to ``target`` (the controller's
        RIEngineOutput for this engine; None: publish nothing)."""
        outlet = getattr(self.service, "outlet", False)
        if outlet is False:
            return  # (an IEngineBase without live output)
        if outlet is None and target is not None:
            outlet = self.service.outlet = OutputOutlet()
        if outlet is not None:
            outlet.target = target

    def close_link(self):
        """Close the lane and the data channel of the link to the controller
        and forget it (the Foolscap connection belongs to the Tub)."""
        self._set_output(None)
        link, self.link = self.link, None
        if link is not None:
            if self._reference.link is link:
                self._reference.link = None
            link.close()

    def _announce(self, engine_id):
        if self.on_registered is not None:
            self.on_registered(engine_id)
        if not self.registered.called:
            self.registered.callback(engine_id)

    def _join_data_channel(self, port, token, tls_always=False):
        link = self.link
        if link.data is not None:
            link.data.close()
            link.data = None
        host = getattr(link.rref.getPeer(), "host", "127.0.0.1")
        peer = DataChannelPeer(host, port, token, fcutil.tubid_of_furl(self.furl), tls_always)

        def joined(peer):
            if self.link is not link:  # the connection it was for has gone meanwhile
                peer.close()
                return
            link.data = peer
            log.info("joined the data channel at {host}:{port}", host=host, port=port)

        def failed(failure):
            log.warn("could not join the data channel at {host}:{port} ({why}); bulk data "
                     "sent to this engine will not arrive", host=host, port=port,
                     why=failure.getErrorMessage())
        return peer.connect().addCallbacks(joined, failed)

    def _failed(self, failure):
        log.failure("registration with the controller failed", failure)
        if not self.registered.called:
            self.stop()
            self.registered.errback(failure)

    # -- losing the controller ------------------------------------------------------------

    def _controller_stopping(self):
        """The controller says it is stopping deliberately (before it closes)."""
        self._stopping_notice = True
        log.info("the controller at {where} says it is shutting down (a deliberate stop)",
                 where=where(self.furl))

    def _disconnected(self, link=None):
        if link is not None and link is not self.link:
            return  # an older connection's loss, told late: this one goes on
        self.close_link()  # (the controller forgets this engine's channels too)
        if not self._running:
            return
        if not self._known:
            self._begin_spell(self.register_timeout, self._first_too_late)
        elif self._stopping_notice:
            if self.stop_wait:
                log.warn("the controller at {where} stopped; waiting up to {t:g} s for it to "
                         "come back (a restart), then this engine exits", where=where(self.furl),
                         t=self.stop_wait)
            self._begin_spell(self.stop_wait, self._stopped_for_good)
            if not self.stop_wait:
                self._stopped_for_good()
                return
        else:
            log.warn("lost the connection to the controller at {where} without notice (did "
                     "it crash, or the network fail?); reconnecting {limit}",
                     where=where(self.furl), limit=_seconds(self.reconnect_timeout))
            self._begin_spell(self.reconnect_timeout, self._reconnect_too_late)
        self._schedule()

    def _stopped_for_good(self):
        self._deadline = None
        self._gave_up(0, f"the controller at {where(self.furl)} was shut down and did not come "
                         f"back within {self.stop_wait:g} s: this engine exits")

    def _reconnect_too_late(self):
        self._deadline = None
        why = self._noted[0] if self._noted is not None else "no answer"
        self._gave_up(1, f"could not reconnect to the controller at {where(self.furl)} within "
                         f"{self.reconnect_timeout:g} s (last: {why}): this engine gives up "
                         f"(ipengine --reconnect-timeout sets how long it tries)")

    def _gave_up(self, status, message):
        self.stop()
        if self.on_gave_up is not None:
            self.on_gave_up(status, message)
        else:
            log.warn("{message}", message=message)

    # -- the FURL file ------------------------------------------------------------------

    def _stop_file_watch(self):
        if self._file_watch is not None and self._file_watch.running:
            self._file_watch.stop()
        self._file_watch = None

    def _check_furl_file(self):
        """Follow a new FURL written to the FURL file (a controller restarted without -r)."""
        try:
            furl = fcutil.find_furl(self.furl_file)
        except (ValueError, OSError):
            return  # not there (yet), or being replaced
        if furl == self.furl or not self._running:
            return
        log.info("the FURL file {path} names a new controller; connecting to it",
                 path=str(self.furl_file))
        self.furl = furl
        self._noted = self._stale_since = None
        self._delay = FIRST_RETRY
        if self._unreachable is not None:
            self._arm_unreachable()   # a new controller gets its own time
        if self.controller is None:
            self._cancel(self._retry)
            self._retry = None
            self._attempt()
