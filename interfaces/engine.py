"""Contracts of an engine: a persistent Python namespace that runs user code.

Every method returns a :class:`twisted.internet.defer.Deferred`, whether the
engine lives in this process or behind a network connection.  "Fires with X"
names the Deferred's result; "fails with E" names the exception its Failure
wraps.  Errors raised by user code keep their original type; the engine
attaches two attributes to them before failing the Deferred:

``_ipkernel_engine_info``
    ``{'engine_id': int or None, 'method': str}``, used by
    :class:`ipkernel.error.CompositeError` to label errors ``[id:method]``.
``_ipkernel_traceback_text``
    the engine-side traceback as plain text (user frames only).

Failures are *aggressive*: a multi-part action (several keys, several
functions) fails as a whole when one part fails.
"""
from zope.interface import Attribute, Interface


class IEngineCore(Interface):
    """Run code and move Python objects in and out of one user namespace."""

    id = Attribute("The engine id (an int) given by the controller, or None before registration.")
    properties = Attribute("The engine's StrictDict of properties (plain data, copy-in/copy-out).")

    def execute(lines):
        """Run the source text ``lines`` in the user namespace.

        Top-level expression statements are evaluated and the last one whose
        value is not None is *displayed* (stored in ``Out``/``_`` and reported).

        Fires with a result dict with keys ``number`` (the command number,
        starting at 1), ``input`` (``{'raw': lines, 'translated': lines}``),
        ``id`` (the engine id), and, only when non-empty, ``stdout``,
        ``stderr`` (captured text) and ``display`` (``{'pprint': ..., 'repr':
        ...}`` of the displayed value).

        Fails with the exception the code raised (SyntaxError included); the
        failed command still consumes its number and stays retrievable with
        :meth:`get_result`, its dict then carrying ``traceback``.
        """

    def push(namespace):
        """Merge the dict ``namespace`` (str keys) into the user namespace.

        Fires with None.  Fails with TypeError when ``namespace`` is not a
        dict of str keys.
        """

    def pull(keys):
        """Fetch values from the user namespace.

        ``keys`` is a str (fires with that one value) or a list/tuple of str
        (fires with a list of values, also for a one-element list).  Fails
        with NameError naming the first missing key, TypeError for other key
        types.
        """

    def push_function(namespace):
        """Merge a dict of name -> function into the user namespace.

        Each function is rebound so that the engine's user namespace is its
        globals (it sees engine variables such as ``id``); names the function
        used from its original globals are added to the namespace where the
        engine does not define them.  Fires with None; fails with TypeError
        if a value is not a function.
        """

    def pull_function(keys):
        """Like :meth:`pull`, for functions; TypeError if a value is not a function."""

    def apply(func, args=(), kwargs=None):
        """Call ``func(*args, **kwargs)`` with the user namespace as its globals.

        Fires with the function's return value; fails with what it raised.
        """

    def apply_batch(calls):
        """Run several independent ``apply`` calls as one command.

        ``calls`` is a list of ``(func, args, kwargs)``.  They run in order in
        one turn of the user-code thread, and a failing call does not stop the
        ones after it.  Fires with one ``(ok, value, started, finished)``
        tuple per call: ``ok`` True and the return value, or False and the
        Failure of what it raised; ``started``/``finished`` are the engine's
        ``time.time()`` around the call.  An interrupt fails the call it hits
        and reports every later call as ``(None, None, None, None)``: not run.
        The task farm uses it to run many small tasks per round trip.
        """

    def starmap(func, argtuples):
        """Fire with ``[func(*a) for a in argtuples]``, ``func`` rebound as in :meth:`apply`.

        This is the engine-side half of a parallel map: one call per engine
        and partition, no helper names left in the namespace.
        """

    def complete(text, line=None):
        """Fire with the sorted list of completions of ``text`` in the user namespace.

        ``line`` is the whole input line, for context; ``text`` is the token
        being completed (``'os.pa'`` completes attributes).
        """

    def get_result(i=None):
        """Fire with the result dict of command number ``i`` (None: the latest).

        Fails with TypeError for a non-int ``i``, IndexError when no such
        command ran, and :class:`ipkernel.error.ResultEvicted` (an IndexError)
        when it ran but fell out of the capped history.
        """

    def reset():
        """Clear the user namespace and history (numbering restarts at 1).

        Properties are cleared, ``id``/``mpi`` re-seeded and the startup
        lines run again.  Fires with None.
        """

    def kill():
        """Stop the engine: it runs no further commands.  Fires with None at
        once, while the user code now running is interrupted (its command
        fails with EngineError)."""

    def keys():
        """Fire with the list of names the user defined (``id`` and ``mpi`` included)."""

    def interrupt():
        """Raise KeyboardInterrupt in the user code now running, if any.

        Not queued behind other commands.  Fires with True if user code was
        running, else False.
        """


class IEngineSerialized(Interface):
    """Move already-serialized objects (:class:`ipkernel.serialize.Serialized`)."""

    def push_serialized(namespace):
        """Unserialize each value of the dict ``namespace`` and push it.

        Fires with None; fails with :class:`ipkernel.error.SerializationError`
        when a value cannot be rebuilt.
        """

    def pull_serialized(keys):
        """Like :meth:`IEngineCore.pull`, but fire with Serialized objects."""


class IEngineProperties(Interface):
    """A small dict of plain data describing an engine (for task ``depend`` checks).

    Keys are str; values are plain data (None, bool, int, float, str, bytes
    and lists, tuples, dicts of those); anything else is refused with
    :class:`ipkernel.error.InvalidProperty`.  Values are copied in and out.
    """

    def set_properties(properties):
        """Update properties from the dict ``properties``.  Fires with None."""

    def get_properties(keys=None):
        """Fire with a dict of copies of the named properties (None: all).

        Fails with KeyError naming an unknown key.
        """

    def del_properties(keys):
        """Delete the named properties; fails with KeyError for an unknown key."""

    def has_properties(keys):
        """Fire with a list of bools, one per key."""

    def clear_properties():
        """Delete every property.  Fires with None."""


class IEngineBase(IEngineCore, IEngineSerialized, IEngineProperties):
    """Everything an engine offers: the pivot for the queueing and network adapters."""


class IEngineQueued(IEngineBase):
    """An engine whose commands run one at a time, in submission order.

    When a command fails, every command still waiting is failed with
    :class:`ipkernel.error.QueueCleared` *before* the failure is delivered, so
    callbacks reacting to the failure may submit new work.  ``interrupt`` is
    not queued.  Execute results are cached so ``get_result`` for them does
    not touch the engine.
    """

    def clear_queue(msg=''):
        """Fail every waiting command with QueueCleared(msg).

        The running command is left alone.  Fires with None.
        """

    def queue_status():
        """Fire with ``{'queue': [repr of waiting commands], 'pending': repr or 'None'}``."""

    def remove_commands(tag, exception):
        """Fail, with ``exception``, the waiting commands submitted under ``tag``.

        Returns (not a Deferred) the number removed.  Used to abort one
        request without touching others.
        """

    def abandon(exception):
        """Fail the running command and every waiting one with ``exception``.

        Used when the engine is lost; a late result of the running command is
        discarded.  Returns None.
        """

    def register_failure_observer(obs):
        """Call ``obs(failure, command_repr)`` whenever a command fails."""

    def unregister_failure_observer(obs):
        """Stop calling ``obs``; ValueError if it was not registered."""
