"""The exceptions of ipkernel.

Every error ipkernel itself raises derives from :class:`KernelError`.  Errors
raised by user code on an engine keep their own type; when a call touched
several engines their errors are bundled in one :class:`CompositeError`.
When an engine-side exception cannot be rebuilt in the client it arrives as
:class:`RemoteError`.

In IPython and Jupyter these errors show their engine-side tracebacks, each
under its ``[engine_id:method]`` label, instead of the client's own frames
(IPython's ``_render_traceback_`` protocol; see :func:`show_engine_traceback`).
"""
import sys
import traceback as _traceback

ENGINE_INFO_ATTR = "_ipkernel_engine_info"
TRACEBACK_ATTR = "_ipkernel_traceback_text"
_NOTED_ATTR = "_ipkernel_traceback_noted"

#: How many engine tracebacks a CompositeError shows in full in IPython and
#: Jupyter; each further failed engine gets one line.
FULL_TRACEBACKS = 4


class KernelError(Exception):
    """Base class of every ipkernel error."""


class EngineError(KernelError):
    """An engine is gone, was killed, or cannot run the command."""


class ControllerError(KernelError):
    """The controller cannot do what was asked (e.g. no engine id is free)."""


class QueueCleared(KernelError):
    """A waiting engine command was discarded (clear_queue, reset, kill, or an
    earlier command on that engine failed)."""


class InvalidEngineID(KernelError, ValueError):
    """A target is not a registered engine id, or targets has a bad form."""


class NoEnginesRegistered(KernelError):
    """``targets='all'`` was used while no engine is registered."""


class InvalidDeferredID(KernelError, KeyError):
    """A pending-result id is unknown, already fetched, cleared, evicted, or
    already being waited for."""

    def __str__(self):  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class ResultNotCompleted(KernelError):
    """A non-blocking fetch of a result that is not ready yet."""


class AbortedPendingDeferredError(KernelError):
    """A blocking fetch whose pending result was deleted while waiting."""


class Aborted(KernelError):
    """The call was aborted before it ran."""


class ResultEvicted(KernelError, IndexError):
    """The command ran, but its result is no longer kept: it fell out of a
    capped history (an engine's last ``history_cap`` commands, or the
    controller's ``ipcontroller --history-bytes`` per engine), or, for a
    non-blocking call, it waited unfetched past the controller's budget
    (``--unfetched-bytes`` per client) or age limit (``--result-ttl``).
    The message names the result, the limit and what to do."""


class SerializationError(KernelError):
    """An object could not be serialized or rebuilt."""


class PayloadTooLarge(KernelError):
    """A serialized payload is bigger than the configured cap."""


class InvalidProperty(KernelError, TypeError):
    """A property key or value is not plain data."""


class MissingBlockArgument(KernelError):
    """An internal blocking helper was called without ``block``."""


class NotAPendingResult(KernelError, TypeError):
    """``barrier`` was given something that is not a PendingResult."""


class StopLocalExecution(KernelError):
    """Raised by ``remote()`` so a with-block does not also run locally."""


class SecurityError(KernelError):
    """A security requirement is not met (key files, permissions, FURLs)."""


class FileTimeoutError(KernelError):
    """A file did not appear in time."""


class TaskAborted(KernelError):
    """The task was aborted."""


class TaskTimeout(KernelError):
    """No engine could take the task within the idle timeout."""


class TaskKilledEngines(EngineError):
    """A task was running on an engine that died, again and again, more
    times than the controller allows (``ipcontroller
    --task-max-engine-losses``, default 3 reschedules): it is not run again.
    The message names the task, how many engines it lost and their ids.
    Such a task probably makes its engine exit or crash; run its code on one
    engine with ``mec.execute`` (or ``mec.apply``) to see what happens."""


class TaskRejectError(KernelError):
    """Raise inside a task to say "this engine cannot run me"; the task is
    then tried on another engine."""


class UnpickleableException(KernelError):
    """Stand-in for a remote exception that could not be serialized."""


class RemoteError(KernelError):
    """An engine-side exception that could not be rebuilt as its own type.

    ``ename`` and ``evalue`` are the remote exception's class name and str,
    ``traceback`` the remote traceback text, ``engine_info`` a dict with at
    least ``engine_id`` and ``method``.
    """

    def __init__(self, ename, evalue, traceback="", engine_info=None):
        super().__init__(ename, evalue, traceback, engine_info)
        self.ename = ename
        self.evalue = evalue
        self.traceback = traceback
        self.engine_info = dict(engine_info or {})
        setattr(self, ENGINE_INFO_ATTR, self.engine_info)
        setattr(self, TRACEBACK_ATTR, traceback)

    def __str__(self):
        return f"{self.ename}: {self.evalue}" if self.evalue else self.ename

    def _render_traceback_(self):
        """What IPython and Jupyter show: the engine label and the engine-side traceback."""
        return engine_traceback_lines(self)


def engine_label(exc):
    """Return ``'[id:method]'`` for an exception carrying engine info, else
    ``'[Engine Exception]'``."""
    info = getattr(exc, ENGINE_INFO_ATTR, None)
    if not info:
        return "[Engine Exception]"
    engine_id = info.get("engine_id")
    return f"[{'?' if engine_id is None else engine_id}:{info.get('method', '?')}]"


def tag_exception(exc, engine_id, method, traceback_text=None):
    """Attach engine info (and traceback text) to ``exc`` unless it has some already."""
    try:
        if getattr(exc, ENGINE_INFO_ATTR, None) is None:
            setattr(exc, ENGINE_INFO_ATTR, {"engine_id": engine_id, "method": method})
        if traceback_text is not None and getattr(exc, TRACEBACK_ATTR, None) is None:
            setattr(exc, TRACEBACK_ATTR, traceback_text)
    except (AttributeError, TypeError):  # exceptions with __slots__ cannot be tagged
        pass
    return exc


def exception_summary(exc):
    """One line naming ``exc``: ``'ZeroDivisionError: division by zero'``
    (a RemoteError names the engine-side type)."""
    try:
        text = str(exc)
    except Exception:  # noqa: B902 - a broken __str__ must not hide the error
        text = "<unprintable>"
    if not isinstance(exc, RemoteError):
        text = f"{type(exc).__name__}: {text}" if text else type(exc).__name__
    return text.splitlines()[0] if text else text


def engine_traceback_lines(exc):
    """The lines IPython shows for one engine exception: its engine label,
    then the traceback text the engine formatted (or, without one, the
    one-line summary of ``exc``; never client-side frames)."""
    return _EngineTraceback(engine_label(exc), _engine_text(exc))()


def _engine_text(exc):
    return getattr(exc, TRACEBACK_ATTR, None) or exception_summary(exc)


class _EngineTraceback:
    """The ``_render_traceback_`` given to an exception rebuilt from an engine.

    It keeps the label and the text rather than the exception (no reference
    cycle), and pickles by reference to this module, so the exception still
    pickles as before.
    """

    __slots__ = ("label", "text")

    def __init__(self, label, text):
        self.label = label
        self.text = text

    def __call__(self):
        return [self.label, *self.text.rstrip("\n").splitlines()]


def show_engine_traceback(exc):
    """Make IPython and Jupyter show ``exc``, an exception rebuilt in the
    client from an engine's record, as its ``[engine_id:method]`` label and
    engine-side traceback (:func:`engine_traceback_lines`) instead of the
    client's frames.  A class with its own ``_render_traceback_`` keeps it.
    Returns ``exc``."""
    if getattr(type(exc), "_render_traceback_", None) is None:
        try:
            exc._render_traceback_ = _EngineTraceback(engine_label(exc), _engine_text(exc))
        except (AttributeError, TypeError):  # a class that refuses new attributes
            pass
    return note_engine_traceback(exc)


def note_engine_traceback(exc):
    """Add the engine-side traceback of ``exc`` (rebuilt in the client) to
    it as a note, so a plain Python traceback (a script, a log) shows where
    on the engine it happened below the client's frames; once.  Returns ``exc``."""
    text = getattr(exc, TRACEBACK_ATTR, None)
    if not text or getattr(exc, _NOTED_ATTR, False):
        return exc
    try:
        exc.add_note(f"{engine_label(exc)} the engine's traceback:\n{text.rstrip()}")
        setattr(exc, _NOTED_ATTR, True)
    except (AttributeError, TypeError):  # a class that refuses new attributes
        pass
    return exc


class CompositeError(KernelError):
    """Errors from several engines, raised together by one multi-engine call.

    ``elist`` is a list of ``(type, value, traceback)`` triples, one per
    failed engine, in target order.  What the engines that did not fail
    returned is kept: ``results`` has one entry per engine the call went
    to, in target order, the engine's result where it succeeded and its
    exception where it failed; ``engine_ids`` names those engines (empty
    when unknown) and ``failed`` holds the positions in ``results`` that are
    failures (an engine may also return an exception as a value).
    """

    def __init__(self, message, elist, results=None, engine_ids=None, failed=None):
        self.message = message
        self.elist = list(elist)
        if results is None:
            results, failed = [value for _, value, _ in self.elist], range(len(self.elist))
        self.results = list(results)
        self.failed = sorted(set(failed if failed is not None else range(len(self.results))))
        self.engine_ids = list(engine_ids or [])
        # all in args: what measures an exception by its args sees the results too
        super().__init__(message, self.elist, self.results, self.engine_ids, self.failed)

    @property
    def successes(self):
        """``{engine id: result}`` of the engines that did not fail (keyed by
        position in ``results`` when the engine ids are unknown)."""
        failed = set(self.failed)
        keys = self.engine_ids if len(self.engine_ids) == len(self.results) else \
            range(len(self.results))
        return {key: value for k, (key, value) in enumerate(zip(keys, self.results))
                if k not in failed}

    @property
    def exceptions(self):
        """The engine exceptions, in target order."""
        return [value for _, value, _ in self.elist]

    def __str__(self):
        lines = [self.message]
        for etype, value, _ in self.elist:
            lines.append(f"{engine_label(value)}: {etype.__name__}: {value}")
        ok = len(self.results) - len(self.failed)
        if ok > 0:
            lines.append(f"({ok} of {len(self.results)} engines succeeded; their results are "
                         f"in .results and .successes)")
        return "\n".join(lines)

    def __repr__(self):
        return f"CompositeError({self.message!r}, {len(self.elist)} errors)"

    def note_engine_tracebacks(self):
        """Add the engine-side tracebacks IPython would show (the first
        :data:`FULL_TRACEBACKS` in full) to this error as a note, so a plain
        Python traceback shows them too; once.  Returns self."""
        if getattr(self, _NOTED_ATTR, False):
            return self
        # (the message and the successes line are in str(self) already)
        self.add_note("\n".join(self._engine_lines()).strip("\n"))
        setattr(self, _NOTED_ATTR, True)
        return self

    def _engine_lines(self):
        """The engine-side tracebacks of the first :data:`FULL_TRACEBACKS`
        errors, each after a blank line, then one line for each further error
        and how to see them all."""
        lines = []
        for _, value, _ in self.elist[:FULL_TRACEBACKS]:
            lines += ["", *engine_traceback_lines(value)]
        rest = self.elist[FULL_TRACEBACKS:]
        if rest:
            lines.append("")
            lines += [f"{engine_label(value)} {exception_summary(value)}" for _, value, _ in rest]
            lines.append(f"({len(rest)} more tracebacks not shown: e.print_tracebacks() prints "
                         f"all {len(self.elist)}, where e is this error, e.g. sys.last_value "
                         f"in IPython)")
        return lines

    def _render_traceback_(self):
        """What IPython and Jupyter show instead of the client-side traceback:
        the message, the engine-side traceback of the first
        :data:`FULL_TRACEBACKS` errors, one line for each further error, and
        how to see them all."""
        lines = [f"{type(self).__name__}: {self.message}", *self._engine_lines()]
        ok = len(self.results) - len(self.failed)
        if ok > 0:
            lines += ["", f"({ok} of {len(self.results)} engines succeeded; their results are "
                          f"in .results and .successes)"]
        return lines

    def _pick(self, excid):
        try:
            return self.elist[excid]
        except (IndexError, TypeError):
            raise IndexError(
                f"no exception number {excid!r}: this CompositeError holds "
                f"{len(self.elist)} (numbered from 0)") from None

    def print_tracebacks(self, excid=None, file=None):
        """Print the engine label and the engine-side traceback of every error
        (or only of error number ``excid``)."""
        out = file if file is not None else sys.stdout
        picked = self.elist if excid is None else [self._pick(excid)]
        for etype, value, tb in picked:
            print(engine_label(value), file=out)
            text = getattr(value, TRACEBACK_ATTR, None)
            if not text and tb is not None:
                text = "".join(_traceback.format_exception(etype, value, tb))
            print(text or "No traceback available", file=out)

    def raise_exception(self, excid=0):
        """Re-raise error number ``excid`` as its original type."""
        _, value, tb = self._pick(excid)
        raise value.with_traceback(tb)


def collect_exceptions(results, method, engine_ids=None):
    """Return ``results`` if none is a Failure; else raise one CompositeError
    listing every failure (nested CompositeErrors are flattened) and keeping
    the other results (``engine_ids``: the engines of ``results``, in order)."""
    from twisted.python.failure import Failure

    elist, values, failed = [], [], []
    for k, item in enumerate(results):
        if not isinstance(item, Failure):
            values.append(item)
            continue
        failed.append(k)
        values.append(item.value)
        if isinstance(item.value, CompositeError):
            elist.extend(item.value.elist)
        else:
            elist.append((item.type, item.value, item.getTracebackObject()))
    if not elist:
        return results
    raise CompositeError(f"one or more exceptions from call to method: {method}", elist,
                         values, engine_ids, failed)
