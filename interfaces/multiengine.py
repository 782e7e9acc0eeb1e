"""Contracts of the multi-engine views of a controller.

:class:`IMultiEngine` gives explicit access to each registered engine: every
engine method plus a ``targets`` argument.  :class:`ISynchronousMultiEngine`
is its two-phase form: each method takes a keyword-only ``block`` (default
True); with ``block=False`` the Deferred fires at once with a *deferred id*
(a str) whose outcome is later fetched with ``get_pending_deferred``.

Targets
    an int engine id, a list/tuple of ids (used in that order, repeats
    allowed, an empty list gives an empty result), or ``'all'`` (every
    registered engine in increasing id order).

Result shapes
    each multiplexed method fires with a list holding one entry per target,
    in target order: what the engine method fires with (see
    :mod:`ipkernel.interfaces.engine`).  ``queue_status`` entries are
    ``(engine_id, status_dict)`` tuples.

Errors
    bad targets fail at once, before any engine is touched, with
    :class:`ipkernel.error.InvalidEngineID`; ``'all'`` with no engine fails
    with :class:`ipkernel.error.NoEnginesRegistered`.  Otherwise the call
    waits for *every* target and, if any failed, fails with one
    :class:`ipkernel.error.CompositeError` holding every engine's error,
    labelled ``[engine_id:method]``.
"""
from zope.interface import Interface


class IEngineMultiplexer(Interface):
    """Every engine method, applied to ``targets``."""

    def execute(lines, targets='all'):
        """Run ``lines`` on each target; fire with a list of result dicts."""

    def push(namespace, targets='all'):
        """Push the dict ``namespace`` to each target; fire with a list of None."""

    def pull(keys, targets='all'):
        """Pull ``keys`` from each target; fire with one value (or list) per target."""

    def push_function(namespace, targets='all'):
        """Push functions to each target; fire with a list of None."""

    def pull_function(keys, targets='all'):
        """Pull functions from each target."""

    def apply(func, args=(), kwargs=None, targets='all'):
        """Call ``func(*args, **kwargs)`` on each target; fire with the return values."""

    def complete(text, line=None, targets='all'):
        """Fire with one list of completions per target."""

    def get_result(i=None, targets='all'):
        """Fire with the result dict of command ``i`` (None: latest) of each target."""

    def reset(targets='all'):
        """Reset each target's namespace; fire with a list of None."""

    def keys(targets='all'):
        """Fire with one list of user names per target."""

    def kill(controller=False, targets='all'):
        """Stop the target engines, bypassing the queues: their running
        commands fail with EngineError and the waiting ones with QueueCleared
        at once, and they are unregistered.

        With ``controller=True`` every engine is stopped (``targets`` is
        ignored) and then the controller itself; fires with None.
        """

    def interrupt(targets='all'):
        """Raise KeyboardInterrupt in user code running on each target, bypassing
        the queues; fire with one bool per target (was something running)."""

    def push_serialized(namespace, targets='all'):
        """Push a dict of Serialized values; fire with a list of None."""

    def pull_serialized(keys, targets='all'):
        """Pull values as Serialized objects."""

    def clear_queue(targets='all'):
        """Fail the waiting commands of each target with QueueCleared; list of None."""

    def queue_status(targets='all'):
        """Fire with a list of ``(engine_id, {'queue': [...], 'pending': ...})``."""

    def set_properties(properties, targets='all'):
        """Update each target's properties; fire with a list of None."""

    def get_properties(keys=None, targets='all'):
        """Fire with one dict of properties per target."""

    def del_properties(keys, targets='all'):
        """Delete properties on each target; fire with a list of None."""

    def has_properties(keys, targets='all'):
        """Fire with one list of bools per target."""

    def clear_properties(targets='all'):
        """Delete every property on each target; fire with a list of None."""


class IMultiEngine(IEngineMultiplexer):
    """A controller seen as an explicit set of engines: the interactive interface."""

    def get_ids():
        """Fire with the sorted list of registered engine ids."""

    def abort_request(request_id):
        """Abort the commands submitted under ``request_id`` that have not started.

        Commands are tagged with the value of
        :data:`ipkernel.engine.queued.current_request` when they are
        submitted.  Removed commands, and any the request submits later, fail
        with :class:`ipkernel.error.Aborted`.  Returns (not a Deferred) the
        number of commands removed.
        """

    def forget_request(request_id):
        """Drop the record that ``request_id`` was aborted (it has finished)."""


class IMultiEngineCoordinator(Interface):
    """Methods that split data across engines and join it back."""

    def scatter(key, seq, dist='b', flatten=False, targets='all'):
        """Partition ``seq`` and push partition k to the k-th target as ``key``.

        ``dist`` is ``'b'`` (contiguous blocks; the first ``len(seq) % n``
        blocks get one extra item) or ``'r'`` (round robin).  With
        ``flatten=True`` a one-item partition is pushed as the bare item.
        Fewer items than targets is allowed (some partitions are empty).
        Fires with a list of None; ValueError for an unknown ``dist``.
        """

    def gather(key, dist='b', targets='all'):
        """Pull ``key`` from each target and join the partitions.

        numpy arrays are joined with ``numpy.concatenate``, str and bytes with
        ``join``, other sequences into one list; ``dist`` undoes the
        corresponding :meth:`scatter`.
        """


class IMultiEngineExtras(Interface):
    """Conveniences built from the primitives."""

    def raw_map(func, seqs, dist='b', targets='all'):
        """Parallel ``list(map(func, *seqs))``.

        ``seqs`` is a list/tuple of equal-length sequences (TypeError /
        ValueError otherwise); ``func`` a callable, or the str name of one
        defined on the engines.  Fires with the list of results in order.
        """

    def map(func, *seqs, dist='b', targets='all'):
        """``raw_map(func, seqs, dist=dist, targets=targets)``."""

    def map_partitions(func, parts, targets='all', dist='b'):
        """Call ``func(*args)`` for each argument tuple of ``parts[k]`` on the
        k-th target and fire with the joined results.

        ``parts`` is a list of lists of argument tuples, or a
        :class:`ipkernel.mapping.PrePartitioned` of serialized
        parts (network clients split the data themselves); serialized
        results are returned unjoined, as a list of parts.  ValueError when
        the number of parts does not match the number of targets.
        """

    def zip_pull(keys, targets='all'):
        """Pull ``keys`` and transpose: with several keys one tuple per key
        (its values across targets); with one key a plain list; with an int
        target the single engine's value(s)."""

    def run(filename, targets='all'):
        """Execute the Python file ``filename`` (read here) on each target.

        A SyntaxError fails at once, before any engine is touched.
        """


class IFullMultiEngine(IMultiEngine, IMultiEngineCoordinator, IMultiEngineExtras):
    """Everything a multi-engine view offers."""


class ISynchronousEngineMultiplexer(IEngineMultiplexer):
    """The methods of :class:`IEngineMultiplexer`, each also taking a
    keyword-only ``block=True``; with ``block=False`` they fire at once with
    a deferred id.  With the default they behave exactly as the plain ones."""


class ISynchronousMultiEngine(ISynchronousEngineMultiplexer):
    """Two-phase version of :class:`IMultiEngine`.

    ``execute(lines, targets='all')`` becomes ``execute(lines,
    targets='all', *, block=True)``.  ``block`` must be passed by keyword.
    """

    def get_ids():
        """Fire with the sorted list of engine ids (never two-phase)."""

    def get_pending_deferred(deferred_id, block=True):
        """Fire with the outcome of the call that returned ``deferred_id``.

        A result is delivered exactly once, then forgotten.  Fails with
        :class:`ipkernel.error.InvalidDeferredID` for an unknown, already
        fetched, cleared or already-waited id, and with
        :class:`ipkernel.error.ResultNotCompleted` when ``block`` is false and
        the call has not finished.  Fails with the call's own error when the
        call failed.
        """

    def clear_pending_deferreds():
        """Forget every pending result; waiters fail with
        :class:`ipkernel.error.AbortedPendingDeferredError`.  Fires with None."""

    def abort(deferred_id):
        """Abort a non-blocking call.

        Its commands that have not started are removed from every target's
        queue, and its result fails with :class:`ipkernel.error.Aborted`.
        Fires with True, or with False when the call had already finished
        (its result is then kept).  Fails with InvalidDeferredID for an
        unknown id.
        """


class ISynchronousMultiEngineCoordinator(IMultiEngineCoordinator):
    """:class:`IMultiEngineCoordinator` with a keyword-only ``block``."""


class ISynchronousMultiEngineExtras(IMultiEngineExtras):
    """:class:`IMultiEngineExtras` with a keyword-only ``block``."""


class IFullSynchronousMultiEngine(ISynchronousMultiEngine,
                                  ISynchronousMultiEngineCoordinator,
                                  ISynchronousMultiEngineExtras):
    """Everything, two-phase: what network clients see."""
