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
import time

from twisted.internet import defer
from twisted.logger import Logger
from twisted.python.failure import Failure

from ipkernel import memtrim, sizes
from ipkernel.error import (AbortedPendingDeferredError, InvalidDeferredID, ResultEvicted,
                            ResultNotCompleted)

__all__ = ["PendingDeferredManager", "two_phase"]

_log = Logger()

# How many discarded (evicted) ids are remembered, so that fetching one later
# can say why it is gone.  Older ones get the ordinary "unknown id" message.
EVICTED_IDS_REMEMBERED = 10_000
#: Bytes of unfetched results one client may leave on the controller.
DEFAULT_MAX_BYTES = 1 << 30
#: Seconds a finished result waits to be fetched before it is discarded.
DEFAULT_TTL = 600.0


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


def _check_limit(name, value, kind, minimum):
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, kind):
        raise TypeError(f"{name} must be None or a number, not {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be at least {minimum}, not {value}")
    return value


class PendingDeferredManager:
    """Keeps the outcomes of saved Deferreds until each is fetched once.

    What waits unfetched is bounded three ways (None: no bound):

    * ``max_pending``: how many *finished* results may wait; when one more
      finishes, the one that has waited longest is discarded (fetching it
      raises InvalidDeferredID saying so).
    * ``max_bytes``: how many bytes they may hold together, measured with
      :func:`ipkernel.sizes.estimate` (large values left on the data channel
      count with their size); the oldest are discarded first, and a result
      bigger than ``max_bytes`` alone is not kept.
    * ``ttl``: seconds a finished result may wait.  Stale results are
      discarded whenever the manager is used and by :meth:`expire` (the
      controller calls it periodically); ``clock`` (a callable returning
      seconds, default ``time.monotonic``) is the time source.

    Fetching a result discarded for bytes or age raises
    :class:`~ipkernel.error.ResultEvicted` naming why.  ``on_discard``
    (settable later) is called with each outcome dropped without being
    delivered (discarded, deleted, cleared, closed), so whoever keeps data
    for it elsewhere can free it.
    """

    def __init__(self, max_pending=None, *, max_bytes=None, ttl=None, clock=None,
                 on_discard=None):
        if max_pending is not None:
            if isinstance(max_pending, bool) or not isinstance(max_pending, int):
                raise TypeError(f"max_pending must be None or an int, not {max_pending!r}")
            if max_pending < 1:
                raise ValueError(f"max_pending must be at least 1, not {max_pending}")
        self.max_pending = max_pending
        self.max_bytes = _check_limit("max_bytes", max_bytes, int, 1)
        self.ttl = _check_limit("ttl", ttl, (int, float), 0)
        self.clock = clock or time.monotonic
        self.on_discard = on_discard
        self._pending = {}  # deferred id -> _Pending, until delivered or forgotten
        # ids of finished, unfetched results, in finishing order -> (finished at, bytes)
        self._unfetched = {}
        self._evicted = {}  # discarded ids -> why (None: max_pending), oldest first
        #: Bytes the unfetched results hold (their estimates).
        self.unfetched_bytes = 0
        self.closed = None  # why, once closed

    def limits(self):
        """The keyword arguments that make a manager with the same bounds."""
        return {"max_pending": self.max_pending, "max_bytes": self.max_bytes,
                "ttl": self.ttl, "clock": self.clock}

    # ids ------------------------------------------------------------------

    def get_deferred_id(self):
        """Return a new deferred id: a str of 40 hex digits, not in use here."""
        while True:
            deferred_id = secrets.token_hex(20)
            if deferred_id not in self._pending:
                return deferred_id

    def quick_has_id(self, deferred_id):
        """Return True if ``deferred_id`` is saved and not yet delivered."""
        self.expire()
        return isinstance(deferred_id, str) and deferred_id in self._pending

    def _lookup(self, deferred_id):
        self.expire()
        entry = self._pending.get(deferred_id) if isinstance(deferred_id, str) else None
        if entry is None:
            raise self._unknown(deferred_id)
        return entry

    def _unknown(self, deferred_id):
        if isinstance(deferred_id, str) and deferred_id in self._evicted:
            why = self._evicted[deferred_id]
            if why is not None:
                return ResultEvicted(f"the result of deferred id {deferred_id} was discarded: "
                                     f"{why}")
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
        else:
            self._discarded(outcome)  # nobody will fetch it: free what it holds elsewhere
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
        size = sizes.estimate(outcome)
        self._unfetched[deferred_id] = (self.clock(), size)
        self.unfetched_bytes += size
        while self.max_pending is not None and len(self._unfetched) > self.max_pending:
            self._evict(next(iter(self._unfetched)), None)
        if self.max_bytes is not None and size > self.max_bytes:
            self._evict(deferred_id, self._over_budget(deferred_id, size))  # alone too big
        while self.max_bytes is not None and self.unfetched_bytes > self.max_bytes:
            oldest = next(iter(self._unfetched))
            self._evict(oldest, self._over_budget(oldest, size))
        self.expire()

    def _over_budget(self, oldest, newest_size):
        budget = sizes.format_size(self.max_bytes)
        alone = self._unfetched[oldest][1]
        if alone > self.max_bytes:
            return (f"it alone ({sizes.format_size(alone)}) is bigger than the "
                    f"{budget} of unfetched results the controller keeps per client. Fetch "
                    f"it with block=True, in pieces, or start ipcontroller with a larger "
                    f"--unfetched-bytes")
        return (f"the unfetched results of this client passed the controller's budget of "
                f"{budget} (a newer result of {sizes.format_size(newest_size)} came) and "
                f"the oldest are discarded first. Fetch results sooner "
                f"(PendingResult.get_result, get_pending_deferred), or start ipcontroller "
                f"with a larger --unfetched-bytes")

    def _evict(self, deferred_id, why):
        """Discard the finished, unfetched result ``deferred_id``; ``why`` is
        what fetching it will say (None: the max_pending message)."""
        held = self._unfetched.get(deferred_id, (None, 0))[1]
        entry = self._forget(deferred_id)
        memtrim.freed(held)
        self._evicted[deferred_id] = why
        if len(self._evicted) > EVICTED_IDS_REMEMBERED:
            del self._evicted[next(iter(self._evicted))]
        self._discarded(entry.outcome)

    def _discarded(self, outcome):
        if self.on_discard is not None:
            try:
                self.on_discard(outcome)
            except Exception:
                _log.failure("the on_discard hook raised")

    def _forget(self, deferred_id):
        held = self._unfetched.pop(deferred_id, None)
        if held is not None:
            self.unfetched_bytes -= held[1]
        return self._pending.pop(deferred_id)

    def expire(self, now=None):
        """Discard the finished results that have waited longer than ``ttl``
        (``now``: the clock's current time by default).  Returns how many."""
        if self.ttl is None or not self._unfetched:
            return 0
        now = self.clock() if now is None else now
        count = 0
        while self._unfetched:
            oldest, (since, _) = next(iter(self._unfetched.items()))
            if now - since <= self.ttl:
                break
            self._evict(oldest, f"it waited unfetched for more than {self.ttl:g} s, the "
                                f"controller's limit (ipcontroller --result-ttl). Fetch "
                                f"results sooner, or start ipcontroller with a larger "
                                f"--result-ttl")
            count += 1
        return count

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
        if entry.done:
            self._discarded(entry.outcome)
        entry.done = True
        waiter, entry.waiter = entry.waiter, None
        if waiter is not None:
            waiter.errback(AbortedPendingDeferredError(
                f"the pending result {deferred_id} was deleted while being waited for"))

    def clear_pending_deferreds(self):
        """Forget every saved id; blocked fetches fail with
        AbortedPendingDeferredError.  Returns a Deferred firing with None."""
        self._drop_all("was cleared while being waited for")
        self._evicted.clear()
        return defer.succeed(None)

    def close(self, why="its client went away"):
        """Forget everything because nobody will fetch it (the client
        disconnected): finished results are dropped at once (``on_discard``),
        late ones as they come, and blocked fetches fail with
        AbortedPendingDeferredError naming ``why``."""
        self.closed = why
        self._drop_all(f"was dropped: {why}")

    def _drop_all(self, what):
        entries = list(self._pending.items())
        memtrim.freed(self.unfetched_bytes)
        self._pending.clear()
        self._unfetched.clear()
        self.unfetched_bytes = 0
        for deferred_id, entry in entries:
            if entry.done:
                self._discarded(entry.outcome)
            entry.done = True
            waiter, entry.waiter = entry.waiter, None
            if waiter is not None:
                waiter.errback(AbortedPendingDeferredError(
                    f"the pending result {deferred_id} {what}"))

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
