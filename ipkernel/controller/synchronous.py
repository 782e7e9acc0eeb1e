"""The two-phase view of a multi-engine: every call can be non-blocking.

``SynchronousMultiEngine(multiengine)`` forwards each method of
:class:`~ipkernel.interfaces.multiengine.IEngineMultiplexer`,
``IMultiEngineCoordinator`` and ``IMultiEngineExtras`` to ``multiengine``
and adds a keyword-only ``block=True``.  With ``block=False`` the call fires
at once with a deferred id; its outcome is fetched later with
``get_pending_deferred(deferred_id, block=True)`` or cancelled with
``abort(deferred_id)``.
"""
import inspect

from twisted.internet import defer
from twisted.logger import Logger
from zope.interface import implementer

from ipkernel.controller.pending import PendingDeferredManager, two_phase
from ipkernel.error import Aborted
from ipkernel.signatures import interface_signature
from ipkernel.interfaces.multiengine import (
    IEngineMultiplexer, IFullSynchronousMultiEngine, IMultiEngineCoordinator, IMultiEngineExtras)

__all__ = ["SynchronousMultiEngine"]

_log = Logger()

FORWARDED_INTERFACES = (IEngineMultiplexer, IMultiEngineCoordinator, IMultiEngineExtras)

_BLOCK_DOC = """

Two-phase: takes a keyword-only ``block=True``.  With ``block=True`` the
Deferred fires as described above, or fails with the multi-engine's error
(InvalidEngineID, NoEnginesRegistered, CompositeError, ...).  With
``block=False`` it fires at once with a deferred id (a str of 40 hex digits)
and that outcome is fetched with ``get_pending_deferred``.  A ``block`` that
is not a bool fails with TypeError."""


@implementer(IFullSynchronousMultiEngine)
class SynchronousMultiEngine(PendingDeferredManager):
    """Two-phase wrapper of an ``IFullMultiEngine`` (``self.multiengine``).

    ``max_pending`` and the keyword-only ``limits`` (``max_bytes``, ``ttl``,
    ``clock``) bound the finished results left unfetched (see
    :class:`~ipkernel.controller.pending.PendingDeferredManager`).
    """

    def __init__(self, multiengine, max_pending=None, **limits):
        super().__init__(max_pending, **limits)
        self.multiengine = multiengine

    def get_ids(self):
        """Fire with the sorted list of registered engine ids (never two-phase)."""
        return defer.maybeDeferred(self.multiengine.get_ids)

    @two_phase
    def map(self, func, *seqs, dist="b", targets="all"):
        """Parallel ``list(map(func, *seqs))`` over ``targets``; fire with the
        list of results in order."""
        return self.multiengine.map(func, *seqs, dist=dist, targets=targets)

    def abort(self, deferred_id):
        """Abort the non-blocking call that returned ``deferred_id``.

        If it has not finished, its result fails with
        :class:`ipkernel.error.Aborted` at once (a blocked fetch gets that
        now), its engine commands that have not started are removed from the
        queues, and the Deferred fires with True.  If it had finished, the
        result is kept and the Deferred fires with False.  Fails with
        InvalidDeferredID for an unknown or already fetched id.
        """
        if not self.quick_has_id(deferred_id):
            return defer.fail(self._unknown(deferred_id))
        aborted = self.abort_pending(deferred_id, Aborted(
            f"the call with deferred id {deferred_id} was aborted; its engine "
            "commands that had not started were not run"))
        if aborted:
            # After abort_pending, so that commands failing with Aborted while
            # being removed cannot settle the result before it is marked aborted.
            abort_request = getattr(self.multiengine, "abort_request", None)
            if abort_request is not None:
                try:
                    abort_request(deferred_id)
                except Exception:
                    _log.failure("abort_request({deferred_id}) failed", deferred_id=deferred_id)
        return defer.succeed(aborted)


def _forwarder(name, spec):
    """A two-phase method calling ``self.multiengine.<name>`` with its arguments."""

    def method(self, *args, **kwargs):
        return getattr(self.multiengine, name)(*args, **kwargs)

    method.__name__ = name
    method.__qualname__ = f"{SynchronousMultiEngine.__name__}.{name}"
    method.__doc__ = inspect.cleandoc(spec.getDoc() or name) + _BLOCK_DOC
    method.__signature__ = interface_signature(spec)
    return two_phase(method)


SynchronousMultiEngine.map.__doc__ = inspect.cleandoc(SynchronousMultiEngine.map.__doc__) + _BLOCK_DOC

# map is written out above: zope.interface does not record keyword-only
# parameters, so its signature cannot be rebuilt from the interface.
for _iface in FORWARDED_INTERFACES:
    for _name in _iface.names():
        if _name not in vars(SynchronousMultiEngine):
            setattr(SynchronousMultiEngine, _name, _forwarder(_name, _iface[_name]))
del _iface, _name
