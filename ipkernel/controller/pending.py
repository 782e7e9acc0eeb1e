"""Results of non-blocking calls, kept until they are fetched by id.

A call made with ``block=False`` answers at once with a *deferred id*; its
outcome waits in a :class:`PendingDeferredManager` until someone asks for it
with :meth:`~PendingDeferredManager.get_pending_deferred`.  The
:func:`two_phase` decorator gives a Deferred-returning method that
keyword-only ``block`` argument.
"""
import functools
import inspect
import secrets

from twisted.internet import defer
from twisted.logger import Logger
from twisted.python.failure import Failure

from ipkernel.error import AbortedPendingDeferredError, InvalidDeferredID, ResultNotCompleted

__all__ = ["PendingDeferredManager", "two_phase"]

_log = Logger()

# How many discarded (evicted) ids are remembered, so that fetching one later
# can say why it is gone.  Older ones get the ordinary "unknown id" message.
EVICTED_IDS_REMEMBERED = 10_000


class _Pending:
    """One saved call: its outcome once it has finished, and who waits for it."""

    __slots__ = ("done", "outcome", "waiter")

    def __init__(self):
        self.done = False
        self.outcome = None  # a value or a Failure, once done
        self.waiter = None  # the Deferred of a blocking fetch, if any


def _fire(d, outcome):
    if isinstance(outcome, Failure):
        d.errback(outcome)
    else:
        d.callback(outcome)


class PendingDeferredManager:
    """Keeps the outcomes of saved Deferreds until each is fetched once.

    ``max_pending`` (None: no limit) bounds how many *finished* results may
    wait unfetched; when one more finishes, the one that has waited longest
    is discarded.
    """

    def __init__(self, max_pending=None):
        if max_pending is not None:
            if isinstance(max_pending, bool) or not isinstance(max_pending, int):
                raise TypeError(f"max_pending must be None or an int, not {max_pending!r}")
            if max_pending < 1:
                raise ValueError(f"max_pending must be at least 1, not {max_pending}")
        self.max_pending = max_pending
        self._pending = {}  # deferred id -> _Pending, until delivered or forgotten
        self._unfetched = {}  # ids of finished, unfetched results, in finishing order
        self._evicted = {}  # ids discarded because of max_pending, oldest first

    # ids ------------------------------------------------------------------

    def get_deferred_id(self):
        """Return a new deferred id: a str of 40 hex digits, not in use here."""
        while True:
            deferred_id = secrets.token_hex(20)
            if deferred_id not in self._pending:
                return deferred_id

    def quick_has_id(self, deferred_id):
        """Return True if ``deferred_id`` is saved and not yet delivered."""
        return isinstance(deferred_id, str) and deferred_id in self._pending

    def _lookup(self, deferred_id):
        entry = self._pending.get(deferred_id) if isinstance(deferred_id, str) else None
        if entry is None:
            raise self._unknown(deferred_id)
        return entry

    def _unknown(self, deferred_id):
        if isinstance(deferred_id, str) and deferred_id in self._evicted:
            return InvalidDeferredID(
                f"the result of deferred id {deferred_id} was discarded: more than "
                f"max_pending={self.max_pending} finished results were waiting to be "
                "fetched. Fetch results sooner (get_pending_deferred), or create the "
                "manager with a larger max_pending (None for no limit).")
        return InvalidDeferredID(
            f"unknown deferred id {deferred_id!r}: it was never issued here, or its "
            "result was already fetched, deleted or cleared")

    # saving and settling ----------------------------------------------------

    def save_pending_deferred(self, d, deferred_id=None):
        """Keep the outcome of Deferred ``d`` under ``deferred_id`` (a new id
        if None) and return the id.

        Callbacks added to ``d`` before saving shape the stored outcome; after
        saving, ``d``'s own chain carries None (its error is kept here, not
        left unhandled).  Raises ValueError if ``deferred_id`` is in use.
        """
        if not isinstance(d, defer.Deferred):
            raise TypeError(f"save_pending_deferred needs a Deferred, not {type(d).__name__}")
        if deferred_id is None:
            deferred_id = self.get_deferred_id()
        elif not isinstance(deferred_id, str):
            raise TypeError(f"a deferred id is a str, not {type(deferred_id).__name__}")
        elif deferred_id in self._pending:
            raise ValueError(f"deferred id {deferred_id} is already in use")
        self._evicted.pop(deferred_id, None)
        entry = _Pending()
        self._pending[deferred_id] = entry
        d.addBoth(self._finished, deferred_id, entry)
        return deferred_id

    def _finished(self, outcome, deferred_id, entry):
        # Ignore a late outcome: the id was deleted, cleared or aborted.
        if not entry.done and self._pending.get(deferred_id) is entry:
            self._settle(deferred_id, entry, outcome)
        return None

    def _settle(self, deferred_id, entry, outcome):
        entry.done = True
        waiter = entry.waiter
        if waiter is not None:
            entry.waiter = None
            del self._pending[deferred_id]
            _fire(waiter, outcome)
            return
        entry.outcome = outcome
        self._unfetched[deferred_id] = None
        while self.max_pending is not None and len(self._unfetched) > self.max_pending:
            oldest = next(iter(self._unfetched))
            del self._unfetched[oldest]
            del self._pending[oldest]
            self._evicted[oldest] = None
            if len(self._evicted) > EVICTED_IDS_REMEMBERED:
                del self._evicted[next(iter(self._evicted))]

    def _forget(self, deferred_id):
        self._unfetched.pop(deferred_id, None)
        return self._pending.pop(deferred_id)

    # fetching ---------------------------------------------------------------

    def get_pending_deferred(self, deferred_id, block=True):
        """Return a Deferred for the outcome saved under ``deferred_id``.

        It fires with the saved call's value (None included) or fails with
        its error; the result is then forgotten, so it is delivered once.
        If the call has not finished, with ``block`` true the Deferred fires
        when it does (cancelling it lets someone else wait), with ``block``
        false it fails with ResultNotCompleted.  Fails with InvalidDeferredID
        for an unknown, already fetched, deleted, cleared or discarded id,
        and for an id someone is already waiting on.
        """
        try:
            entry = self._lookup(deferred_id)
        except InvalidDeferredID as exc:
            return defer.fail(exc)
        if entry.waiter is not None:
            return defer.fail(InvalidDeferredID(
                f"deferred id {deferred_id} is already being waited for; "
                "its result is delivered only once"))
        if entry.done:
            self._forget(deferred_id)
            result = defer.Deferred()
            _fire(result, entry.outcome)
            return result
        if not block:
            return defer.fail(ResultNotCompleted(
                f"the call with deferred id {deferred_id} has not finished yet; "
                "ask again later, or with block=True"))

        def stop_waiting(waiter):
            if entry.waiter is waiter:
                entry.waiter = None

        entry.waiter = defer.Deferred(canceller=stop_waiting)
        return entry.waiter

    # forgetting -------------------------------------------------------------

    def delete_pending_deferred(self, deferred_id):
        """Forget ``deferred_id`` now; its outcome, even a late one, is dropped.

        A blocked fetch of it fails with AbortedPendingDeferredError.  Returns
        None; raises InvalidDeferredID (synchronously) for an unknown id.
        """
        self._lookup(deferred_id)
        entry = self._forget(deferred_id)
        entry.done = True
        waiter, entry.waiter = entry.waiter, None
        if waiter is not None:
            waiter.errback(AbortedPendingDeferredError(
                f"the pending result {deferred_id} was deleted while being waited for"))

    def clear_pending_deferreds(self):
        """Forget every saved id; blocked fetches fail with
        AbortedPendingDeferredError.  Returns a Deferred firing with None."""
        entries = list(self._pending.items())
        self._pending.clear()
        self._unfetched.clear()
        self._evicted.clear()
        for deferred_id, entry in entries:
            entry.done = True
            waiter, entry.waiter = entry.waiter, None
            if waiter is not None:
                waiter.errback(AbortedPendingDeferredError(
                    f"the pending result {deferred_id} was cleared while being waited for"))
        return defer.succeed(None)

    def abort_pending(self, deferred_id, exception):
        """Make an unfinished saved call fail with ``exception`` (an exception
        instance or a Failure) right now.

        A blocked fetch gets the failure at once and the call's real outcome,
        when it comes, is dropped.  Returns True; returns False (keeping the
        result) if the call had already finished.  Raises InvalidDeferredID
        for an unknown id.
        """
        entry = self._lookup(deferred_id)
        if entry.done:
            return False
        failure = exception if isinstance(exception, Failure) else Failure(exception)
        self._settle(deferred_id, entry, failure)
        return True


def _forget_request(result, forget, deferred_id):
    try:
        forget(deferred_id)
    except Exception:
        _log.failure("forget_request({deferred_id}) failed", deferred_id=deferred_id)
    return result


def two_phase(method):
    """Decorate ``method(self, ...) -> Deferred`` of a PendingDeferredManager
    subclass so that it also takes a keyword-only ``block=True``.

    With ``block=True`` the call returns the method's Deferred.  With
    ``block=False`` the method runs with
    :data:`ipkernel.engine.queued.current_request` set to a new deferred id
    (so the engine commands it submits are tagged with it), its Deferred is
    saved under that id, and the returned Deferred fires with the id.  When
    ``self.multiengine`` has ``forget_request``, it is called with the id once
    the call has finished.  A ``block`` that is not a bool fails with
    TypeError.
    """
    signature = inspect.signature(method)
    params = list(signature.parameters.values())
    block_param = inspect.Parameter("block", inspect.Parameter.KEYWORD_ONLY, default=True)
    if params and params[-1].kind is inspect.Parameter.VAR_KEYWORD:
        params.insert(len(params) - 1, block_param)
    else:
        params.append(block_param)

    @functools.wraps(method)
    def wrapper(self, *args, block=True, **kwargs):
        if not isinstance(block, bool):
            return defer.fail(TypeError(
                f"{method.__name__}(): block must be True or False, not {block!r}"))
        if block:
            return defer.maybeDeferred(method, self, *args, **kwargs)
        from ipkernel.engine.queued import current_request

        deferred_id = self.get_deferred_id()
        token = current_request.set(deferred_id)
        try:
            d = defer.maybeDeferred(method, self, *args, **kwargs)
        finally:
            current_request.reset(token)
        forget = getattr(getattr(self, "multiengine", None), "forget_request", None)
        if forget is not None:
            d.addBoth(_forget_request, forget, deferred_id)
        self.save_pending_deferred(d, deferred_id)
        return defer.succeed(deferred_id)

    wrapper.__signature__ = signature.replace(parameters=params)
    return wrapper
