"""Engines connect out to the controller and register; they reconnect by themselves.

:class:`EngineConnector` keeps an engine registered: it uses a Foolscap
Reconnector, so when the controller goes away (restart with ``-r``) the
engine registers again as soon as it is back, asking for its old id.
"""
import os

from twisted.internet import defer
from twisted.logger import Logger

from ipkernel import fcutil
from ipkernel.engine.fc import FCEngineFromService

log = Logger()

MAX_RECONNECT_DELAY = 10.0


class EngineConnector:
    """Registers ``service`` (an EngineService) with the controller at ``furl_or_file``.

    ``registered`` is a Deferred that fires with the engine id after the
    first registration; ``on_registered(id)`` is called after every one.
    """

    def __init__(self, tub, service, furl_or_file, on_registered=None):
        self.tub = tub
        self.service = service
        self.furl = fcutil.find_furl(furl_or_file)
        self.on_registered = on_registered
        self.registered = defer.Deferred()
        self.controller = None
        self._reconnector = None
        self._reference = FCEngineFromService(service)

    def start(self):
        """Start connecting (and reconnecting); return ``self.registered``."""
        self._reconnector = self.tub.connectTo(self.furl, self._connected)
        self._reconnector.maxDelay = MAX_RECONNECT_DELAY
        return self.registered

    def stop(self):
        if self._reconnector is not None:
            self._reconnector.stopConnecting()
            self._reconnector = None

    def _connected(self, rref):
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
        if self.on_registered is not None:
            self.on_registered(engine_id)
        if not self.registered.called:
            self.registered.callback(engine_id)

    def _failed(self, failure):
        log.failure("registration with the controller failed", failure)
        if not self.registered.called:
            self.registered.errback(failure)

    def _disconnected(self):
        log.info("lost the connection to the controller; reconnecting")
        self.controller = None
