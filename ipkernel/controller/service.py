"""ControllerService: the registry of engines (pure logic, no network)."""
import heapq
import time

from twisted.application import service
from twisted.internet import defer
from twisted.logger import Logger
from zope.interface import implementer

from ipkernel.error import ControllerError, EngineError
from ipkernel.interfaces.controller import IControllerBase
from ipkernel.interfaces.engine import IEngineBase, IEngineQueued

log = Logger()


def _check_optional(name, value, kind):
    if value is not None and (isinstance(value, bool) or not isinstance(value, kind)):
        raise TypeError(f"{name} must be {kind.__name__} or None, not {value!r}")


class _Observer:
    __slots__ = ("f", "include_id", "args", "kwargs")

    def __init__(self, f, include_id, args, kwargs):
        if not callable(f):
            raise TypeError(f"an observer must be callable, not {f!r}")
        self.f, self.include_id, self.args, self.kwargs = f, include_id, args, kwargs

    def notify(self, engine_id, event):
        try:
            if self.include_id:
                self.f(engine_id, *self.args, **self.kwargs)
            else:
                self.f(*self.args, **self.kwargs)
        except Exception:
            log.failure("{event} observer {f!r} raised for engine {id}; it stays registered",
                        event=event, f=self.f, id=engine_id)


@implementer(IControllerBase)
class ControllerService(service.Service):
    """Hands out engine ids and keeps one queued engine per id.

    Ids run from 0 to ``max_engines`` inclusive; the lowest free one is given
    out first.  With ``save_ids`` an unregistered engine's id is kept for it:
    it is only handed out again to an engine that asks for it explicitly
    (an engine reconnecting after a network failure or controller restart).
    ``shutdown_hook`` is called by :meth:`shutdown`.
    """

    name = "ControllerService"

    def __init__(self, max_engines=511, save_ids=False, shutdown_hook=None):
        self.max_engines = max_engines
        self.save_ids = save_ids
        self.shutdown_hook = shutdown_hook
        self.engines = {}
        self._info = {}
        self._free = list(range(max_engines + 1))  # a heap
        self._free_set = set(self._free)
        self._saved = set()
        self._reserved = set()  # ids held for engines that register once their channels are up
        self._on_register = []
        self._on_unregister = []
        self._on_n = []

    # -- registration -------------------------------------------------------------

    def _take_id(self, wanted):
        if wanted is not None and wanted not in self.engines and (
                wanted in self._free_set or wanted in self._saved):
            self._free_set.discard(wanted)
            self._saved.discard(wanted)
            return wanted
        while self._free:
            candidate = heapq.heappop(self._free)
            if candidate in self._free_set:
                self._free_set.discard(candidate)
                return candidate
        raise ControllerError(
            f"no free engine id: this controller takes at most {self.max_engines + 1} engines "
            f"(start it with a larger max_engines)")

    def _release_id(self, engine_id):
        if self.save_ids:
            self._saved.add(engine_id)
        elif 0 <= engine_id <= self.max_engines:
            self._free_set.add(engine_id)
            heapq.heappush(self._free, engine_id)

    def reserve_id(self, id=None):
        """Take an engine id (``id`` if it is free, else the lowest free one) for
        an engine that is not counted yet; ``register_engine`` with that id
        registers it, :meth:`cancel_reservation` gives the id back."""
        _check_optional("id", id, int)
        engine_id = self._take_id(id)
        self._reserved.add(engine_id)
        return engine_id

    def cancel_reservation(self, id):
        """Give back an id taken with :meth:`reserve_id` and never registered."""
        if id in self._reserved:
            self._reserved.discard(id)
            self._release_id(id)

    def register_engine(self, engine, id=None, ip=None, port=None, pid=None):
        if not IEngineQueued.providedBy(engine):
            if not IEngineBase.providedBy(engine):
                raise TypeError(f"register_engine needs an IEngineQueued or IEngineBase, "
                                f"not {type(engine).__name__}")
            engine = IEngineQueued(engine)
        _check_optional("id", id, int)
        _check_optional("port", port, int)
        _check_optional("pid", pid, int)
        _check_optional("ip", ip, str)
        if id is not None and id in self._reserved:
            self._reserved.discard(id)
            engine_id = id
        else:
            engine_id = self._take_id(id)
        engine.id = engine_id
        engine.service = self
        self.engines[engine_id] = engine
        self._info[engine_id] = {"id": engine_id, "ip": ip, "port": port, "pid": pid,
                                 "registered": time.time()}
        log.info("registered engine {id} (ip={ip} port={port} pid={pid})",
                 id=engine_id, ip=ip, port=port, pid=pid)
        for observer in list(self._on_register):
            observer.notify(engine_id, "register")
        self._check_n_engines()
        return {"id": engine_id}

    def _check_n_engines(self):
        count = len(self.engines)
        ready = [entry for entry in self._on_n if entry[0] <= count]
        self._on_n = [entry for entry in self._on_n if entry[0] > count]
        for _, f, args, kwargs in ready:
            try:
                f(*args, **kwargs)
            except Exception:
                log.failure("callback {f!r} for {n} engines raised", f=f, n=count)

    def unregister_engine(self, id):
        if isinstance(id, bool) or not isinstance(id, int):
            raise TypeError(f"an engine id is an int, not {id!r}")
        engine = self.engines.pop(id, None)
        if engine is None:
            log.warn("asked to unregister engine {id}, which is not registered", id=id)
            return False
        self._info.pop(id, None)
        self._release_id(id)
        log.info("unregistered engine {id}", id=id)
        engine.abandon(EngineError(f"engine {id} was unregistered (it stopped, died or lost its "
                                   f"connection); its commands did not complete"))
        for observer in list(self._on_unregister):
            observer.notify(id, "unregister")
        return True

    # -- observers ------------------------------------------------------------------

    def on_register_engine_do(self, f, include_id, *args, **kwargs):
        self._on_register.append(_Observer(f, include_id, args, kwargs))

    def on_unregister_engine_do(self, f, include_id, *args, **kwargs):
        self._on_unregister.append(_Observer(f, include_id, args, kwargs))

    @staticmethod
    def _remove(observers, f):
        for i, observer in enumerate(observers):
            if observer.f == f:
                del observers[i]
                return

    def on_register_engine_do_not(self, f):
        self._remove(self._on_register, f)

    def on_unregister_engine_do_not(self, f):
        self._remove(self._on_unregister, f)

    def on_n_engines_registered_do(self, n, f, *args, **kwargs):
        if not callable(f):
            raise TypeError(f"f must be callable, not {f!r}")
        self._on_n.append((n, f, args, kwargs))
        self._check_n_engines()

    def wait_for_engines(self, n):
        d = defer.Deferred()
        self.on_n_engines_registered_do(n, lambda: d.callback(sorted(self.engines)))
        return d

    def engine_info(self, id):
        return dict(self._info[id])

    def shutdown(self):
        """Call ``shutdown_hook`` (if any); fires with None.  See
        :meth:`~ipkernel.interfaces.controller.IControllerCore.shutdown`."""
        log.info("controller shutdown requested")
        if self.shutdown_hook is not None:
            try:
                self.shutdown_hook()
            except Exception:
                log.failure("controller shutdown hook raised")
        return defer.succeed(None)


class ControllerAdapterBase:
    """Base of the controller views: delegates IControllerCore to ``controller``."""

    def __init__(self, controller):
        if not IControllerBase.providedBy(controller):
            raise TypeError(f"expected an IControllerBase, not {type(controller).__name__}")
        self.controller = controller

    @property
    def engines(self):
        return self.controller.engines

    def register_engine(self, engine, id=None, ip=None, port=None, pid=None):
        return self.controller.register_engine(engine, id, ip, port, pid)

    def unregister_engine(self, id):
        return self.controller.unregister_engine(id)

    def on_register_engine_do(self, f, include_id, *args, **kwargs):
        return self.controller.on_register_engine_do(f, include_id, *args, **kwargs)

    def on_unregister_engine_do(self, f, include_id, *args, **kwargs):
        return self.controller.on_unregister_engine_do(f, include_id, *args, **kwargs)

    def on_register_engine_do_not(self, f):
        return self.controller.on_register_engine_do_not(f)

    def on_unregister_engine_do_not(self, f):
        return self.controller.on_unregister_engine_do_not(f)

    def on_n_engines_registered_do(self, n, f, *args, **kwargs):
        return self.controller.on_n_engines_registered_do(n, f, *args, **kwargs)

    def wait_for_engines(self, n):
        return self.controller.wait_for_engines(n)

    def engine_info(self, id):
        return self.controller.engine_info(id)

    def shutdown(self):
        return self.controller.shutdown()
