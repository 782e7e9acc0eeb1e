"""Engines connect out to the controller and register; they reconnect by themselves.

:class:`EngineConnector` keeps an engine registered: it uses a Foolscap
Reconnector, so when the controller goes away (restart with ``-r``) the
engine registers again as soon as it is back, asking for its old id.  When
the engine was given a FURL *file*, it also watches that file while
disconnected: a controller restarted without ``-r`` writes a new FURL there,
and the engine follows it.
"""
import os
from pathlib import Path

from twisted.internet import defer, task
from twisted.logger import Logger

from ipkernel import fcutil
from ipkernel.datachannel import DataChannelPeer
from ipkernel.engine.fc import FCEngineFromService
from ipkernel.lane import join_lane, lane_allowed

log = Logger()

MAX_RECONNECT_DELAY = 10.0
#: Seconds between looks at the FURL file while disconnected.
FURL_FILE_POLL = 2.0


class EngineConnector:
    """Registers ``service`` (an EngineService) with the controller at ``furl_or_file``.

    ``registered`` is a Deferred that fires with the engine id after the
    first registration; ``on_registered(id)`` is called after every one.
    """

    def __init__(self, tub, service, furl_or_file, on_registered=None, clock=None):
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
        self.registered = defer.Deferred()
        self.controller = None
        self._reconnector = None
        self._reference = FCEngineFromService(service)
        #: The lane the controller's commands arrive on, once joined (else Foolscap).
        self.lane = None

    def start(self):
        """Start connecting (and reconnecting); return ``self.registered``."""
        self._reconnector = self.tub.connectTo(self.furl, self._connected)
        self._reconnector.maxDelay = MAX_RECONNECT_DELAY
        return self.registered

    def stop(self):
        self.close_data_channel()
        self._close_lane()
        self._stop_file_watch()
        if self._reconnector is not None:
            self._reconnector.stopConnecting()
            self._reconnector = None

    def _connected(self, rref):
        self._stop_file_watch()
        self.controller = rref
        rref.notifyOnDisconnect(self._disconnected)
        properties = self.service.properties.copy()
        d = rref.callRemote("register_engine", self._reference, self.service.id, os.getpid(),
                            properties)
        d.addCallbacks(self._registered, self._failed)

    def _registered(self, reply):
        engine_id = reply["id"]
        self.service.id = engine_id
        log.info("registered with the controller as engine {id}", id=engine_id)
        joins = []
        if reply.get("lane") and self.controller is not None:
            joins.append(self._join_lane(*reply["lane"]))
        if reply.get("data") and self.controller is not None:
            joins.append(self._join_data_channel(*reply["data"]))
        if joins:
            d = defer.DeferredList(joins)
            return d.addCallback(lambda _: self._announce(engine_id))
        self._announce(engine_id)

    def _join_lane(self, port, token):
        self._close_lane()
        if not lane_allowed(getattr(self.controller.getPeer(), "host", None)):
            return defer.succeed(None)  # another host: commands come through Foolscap

        def joined(lane):
            self.lane = lane
        return join_lane(self.controller, port, token, local=self._reference).addCallback(joined)

    def _close_lane(self):
        lane, self.lane = self.lane, None
        if lane is not None:
            lane.close()

    def _announce(self, engine_id):
        if self.on_registered is not None:
            self.on_registered(engine_id)
        if not self.registered.called:
            self.registered.callback(engine_id)

    def _join_data_channel(self, port, token, tls_always=False):
        old = self._reference.data
        if old is not None:
            old.close()
        self._reference.data = None
        host = getattr(self.controller.getPeer(), "host", "127.0.0.1")
        peer = DataChannelPeer(host, port, token, fcutil.tubid_of_furl(self.furl), tls_always)

        def joined(peer):
            self._reference.data = peer
            log.info("joined the data channel at {host}:{port}", host=host, port=port)

        def failed(failure):
            log.warn("could not join the data channel at {host}:{port} ({why}); bulk data "
                     "sent to this engine will not arrive", host=host, port=port,
                     why=failure.getErrorMessage())
        return peer.connect().addCallbacks(joined, failed)

    def close_data_channel(self):
        """Leave the data channel (the engine is stopping)."""
        if self._reference.data is not None:
            self._reference.data.close()
            self._reference.data = None

    def _failed(self, failure):
        log.failure("registration with the controller failed", failure)
        if not self.registered.called:
            self.registered.errback(failure)

    def _disconnected(self):
        log.info("lost the connection to the controller; reconnecting")
        self.controller = None
        self._close_lane()
        if self.furl_file is not None and self._reconnector is not None:
            self._file_watch = task.LoopingCall(self._check_furl_file)
            self._file_watch.clock = self._clock
            self._file_watch.start(FURL_FILE_POLL, now=False)

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
        if furl == self.furl or self._reconnector is None:
            return
        log.info("the FURL file {path} names a new controller; connecting to it",
                 path=str(self.furl_file))
        self._stop_file_watch()
        self._reconnector.stopConnecting()
        self.furl = furl
        self._reconnector = self.tub.connectTo(self.furl, self._connected)
        self._reconnector.maxDelay = MAX_RECONNECT_DELAY
