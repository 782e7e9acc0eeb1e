"""The exceptions of ipkernel.

Every error ipkernel itself raises derives from :class:`KernelError`.  Errors
raised by user code on an engine keep their own type; when a call touched
several engines their errors are bundled in one :class:`CompositeError`.
When an engine-side exception cannot be rebuilt in the client it arrives as
:class:`RemoteError`.
"""
import sys
import traceback as _traceback

ENGINE_INFO_ATTR = "_ipkernel_engine_info"
TRACEBACK_ATTR = "_ipkernel_traceback_text"


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
    """The command ran, but its result fell out of the capped history."""


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


class CompositeError(KernelError):
    """Errors from several engines, raised together by one multi-engine call.

    ``elist`` is a list of ``(type, value, traceback)`` triples, one per
    failed engine, in target order.
    """

    def __init__(self, message, elist):
        super().__init__(message, elist)
        self.message = message
        self.elist = list(elist)

    @property
    def exceptions(self):
        """The engine exceptions, in target order."""
        return [value for _, value, _ in self.elist]

    def __str__(self):
        lines = [self.message]
        for etype, value, _ in self.elist:
            lines.append(f"{engine_label(value)}: {etype.__name__}: {value}")
        return "\n".join(lines)

    def __repr__(self):
        return f"CompositeError({self.message!r}, {len(self.elist)} errors)"

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


def collect_exceptions(results, method):
    """Return ``results`` if none is a Failure; else raise one CompositeError
    listing every failure (nested CompositeErrors are flattened)."""
    from twisted.python.failure import Failure

    elist = []
    for item in results:
        if not isinstance(item, Failure):
            continue
        if isinstance(item.value, CompositeError):
            elist.extend(item.value.elist)
        else:
            elist.append((item.type, item.value, item.getTracebackObject()))
    if not elist:
        return results
    raise CompositeError(f"one or more exceptions from call to method: {method}", elist)
