"""How ipkernel's values cross Foolscap connections.

* :class:`ipkernel.serialize.Serialized` travels as a copyable: the receiver
  gets a Serialized holding the same frames, and nothing is unpickled on the
  way (the controller passes it on as it is).
* Errors travel as :class:`ErrorRecord` copyables returned in place of a
  result (``expose-remote-exception-types`` is off, so raised errors would
  lose their type).  :func:`record_from_exception` makes one;
  :func:`exception_from_record` rebuilds the exception on the client: the
  original type when it can be unpickled (engine errors) or looked up
  (ipkernel and builtin errors), else :class:`ipkernel.error.RemoteError`.
"""
import builtins
import json
import re

from foolscap.api import (DeadReferenceError, RemoteException, Violation, registerCopier,
                          registerRemoteCopyFactory)
from foolscap.schema import ByteStringConstraint
from twisted.internet import error as net_error
from twisted.python.failure import Failure

from ipkernel import error as errors
from ipkernel import framing, serialize
from ipkernel.serialize import Serialized

SERIALIZED_TYPE = "ipkernel.Serialized:2"
ERROR_TYPE = "ipkernel.ErrorRecord:1"
JSON_TYPE = "ipkernel.Json:1"


class ErrorRecord:
    """A failure in plain data: what it was, where, and (for engine errors)
    the pickled exception to rebuild it from."""

    __slots__ = ("ename", "evalue", "module", "traceback", "engine_info", "exception",
                 "errors", "message", "results")

    def __init__(self, ename, evalue="", module="", traceback="", engine_info=None,
                 exception=None, errors=None, message="", results=None):
        self.ename = ename
        self.evalue = evalue
        self.module = module
        self.traceback = traceback
        self.engine_info = dict(engine_info or {})
        self.exception = exception
        self.errors = list(errors or [])
        self.message = message
        #: A CompositeError's results: ``{"values": [...], "failed": [...],
        #: "ids": [...]}`` (None at the failed positions), or None.
        self.results = results

    def state(self):
        return {name: getattr(self, name) for name in self.__slots__}

    def __repr__(self):
        return f"<ErrorRecord {self.module}.{self.ename}: {self.evalue}>"


def _serialized_state(s):
    # One bytes token: Foolscap's cost is per token, so a dict of type,
    # metadata and a list of frames costs several times more.
    return SERIALIZED_TYPE, {"p": framing.pack([s])}


def _serialized_from_state(state):
    packed = state.get("p")
    if not isinstance(packed, bytes):
        raise Violation("a Serialized value arrived without its packed frames")
    try:
        (value,) = framing.unpack(packed)
    except ValueError as exc:
        raise Violation(f"a Serialized value arrived malformed: {exc}") from None
    return value


def _error_from_state(state):
    return ErrorRecord(**state)


class AsJson:
    """Plain data (an execute result, a list of them) sent as one JSON token.

    The receiver gets the decoded data itself, not an AsJson: a nested dict
    costs Foolscap a few tokens per key, JSON one token in all.  JSON (not
    pickle) is safe for the controller to read.  Only for data JSON keeps
    exactly: str keys, str/int/float/bool/None, lists and dicts.
    """

    __slots__ = ("value",)

    def __init__(self, value):
        self.value = value


def _json_from_state(state):
    text = state.get("j")
    if not isinstance(text, bytes):
        raise Violation("a JSON value arrived without its text")
    try:
        return json.loads(text)
    except ValueError as exc:
        raise Violation(f"a JSON value arrived malformed: {exc}") from None


#: What a Serialized may carry beyond its frames (the packed header).
SERIALIZED_OVERHEAD = 64 * 1024


class _SerializedLimit:
    """The state schema of an arriving Serialized: with a limit set (see
    :func:`set_serialized_limit`) its packed frames are refused on the token's
    header, before Foolscap reads the body."""

    limit = None

    def getAttrConstraint(self, name):
        if name == "p" and self.limit is not None:
            return True, ByteStringConstraint(maxLength=self.limit)
        return True, None


_SCHEMA = _SerializedLimit()


def set_serialized_limit(payload_cap):
    """Refuse every Serialized larger than ``payload_cap`` bytes (plus
    :data:`SERIALIZED_OVERHEAD`) that arrives in this process through
    Foolscap, on its header (None: no limit).  The controller sets it from
    ``--payload-cap``: the refused call fails with PayloadTooLarge, and the
    controller never holds more of such a value than its header."""
    _SCHEMA.limit = None if payload_cap is None else int(payload_cap) + SERIALIZED_OVERHEAD


def _register():
    registerCopier(Serialized, _serialized_state)
    # cyclic=False: a Serialized holds no references, and the factory then
    # runs at once instead of through a Deferred per value.
    registerRemoteCopyFactory(SERIALIZED_TYPE, _serialized_from_state, stateSchema=_SCHEMA,
                              cyclic=False)
    registerCopier(ErrorRecord, lambda r: (ERROR_TYPE, r.state()))
    registerRemoteCopyFactory(ERROR_TYPE, _error_from_state)
    registerCopier(AsJson, lambda v: (JSON_TYPE, {
        "j": json.dumps(v.value, separators=(",", ":")).encode()}))
    registerRemoteCopyFactory(JSON_TYPE, _json_from_state, cyclic=False)


_register()


class WireError(errors.RemoteError):
    """An error that arrived as a record and is passed on unopened (controller side)."""

    def __init__(self, record):
        super().__init__(record.ename, record.evalue, record.traceback, record.engine_info)
        self.record = record


# -- tagged control data ------------------------------------------------------------


def _is_id(value):
    return isinstance(value, int) and not isinstance(value, bool)


#: Engine ids on the wire are 8-byte integers (RemoteInterface EngineId);
#: no controller hands out ids anywhere near this.
_ID_LIMIT = 2 ** 64
#: The longest target list the RemoteInterfaces accept.
MAX_TARGETS = 100_000


def _check_ids(ids):
    for value in ids:
        if abs(value) >= _ID_LIMIT:
            raise errors.InvalidEngineID(f"engine id {value} is not registered (out of range)")
    return ids


def encode_targets(targets):
    """``'all'`` / an id / a list of ids -> the tagged wire form (InvalidEngineID if bad)."""
    if isinstance(targets, str) and targets == "all":
        return ("all", [])
    if _is_id(targets):
        return ("one", _check_ids([targets]))
    if isinstance(targets, (list, tuple)) and all(_is_id(t) for t in targets):
        if len(targets) > MAX_TARGETS:
            raise errors.InvalidEngineID(f"a target list holds at most {MAX_TARGETS} ids, "
                                         f"not {len(targets)}")
        return ("list", _check_ids(list(targets)))
    raise errors.InvalidEngineID(f"targets must be an int, a list of ints or 'all', "
                                 f"not {targets!r:.200}")


def decode_targets(wire_targets):
    kind, ids = wire_targets
    if kind == "all":
        return "all"
    if kind == "one" and len(ids) == 1:
        return ids[0]
    if kind == "list":
        return list(ids)
    raise errors.InvalidEngineID(f"malformed targets {wire_targets!r}")


def encode_keys(keys):
    """A name / a list of names / None -> the tagged wire form (TypeError if bad)."""
    if keys is None:
        return ("none", [])
    if isinstance(keys, str):
        return ("one", [keys])
    if isinstance(keys, (list, tuple)) and all(isinstance(k, str) for k in keys):
        return ("list", list(keys))
    raise TypeError(f"keys must be a str or a list/tuple of str, not {keys!r}")


def decode_keys(wire_keys):
    kind, names = wire_keys
    if kind == "none":
        return None
    if kind == "one" and len(names) == 1:
        return names[0]
    if kind == "list":
        return list(names)
    raise TypeError(f"malformed keys {wire_keys!r}")


def encode_line(line):
    """``None`` / a str -> the tagged wire form of an optional line (``[]`` / ``[line]``)."""
    if line is None:
        return []
    if isinstance(line, str):
        return [line]
    raise TypeError(f"line must be a str or None, not {type(line).__name__}")


def decode_line(wire_line):
    return wire_line[0] if wire_line else None


#: Types of values with nothing inside to decode (kept without a call).
_PLAIN = frozenset({str, int, float, bool, type(None), bytes})


def decode_values(value):
    """Rebuild every Serialized inside ``value`` (lists, tuples and dicts are
    walked).  A container with nothing to rebuild inside is returned as it
    is, one with something is copied.  Client and engine side only: the
    controller never calls it."""
    t = type(value)
    if t in _PLAIN:
        return value
    if isinstance(value, Serialized):
        return serialize.unserialize(value)
    if isinstance(value, dict):
        out = _rebuilt(value, value.items(), dict)
        return value if out is None else out
    if isinstance(value, (list, tuple)):
        out = _rebuilt(value, enumerate(value), list)
        if out is None:
            return value
        return out if isinstance(value, list) else tuple(out)
    return value


def _rebuilt(value, items, copy):
    """``copy(value)`` with the decoded form of each ``(key, item)`` of
    ``items`` that changes in decoding, or None when none does."""
    plain = _PLAIN
    out = None
    for k, v in items:
        if type(v) in plain:
            continue
        decoded = decode_values(v)
        if decoded is not v:
            if out is None:
                out = copy(value)
            out[k] = decoded
    return out


# -- failed calls -----------------------------------------------------------------------

_CONNECTION_LOST = (DeadReferenceError, net_error.ConnectionLost, net_error.ConnectionDone)
_SIZE_WORDS = ("too long", "too large", "too many", "is full", "maxKeys")


def _violation_error(violation, method, peer, refused_there):
    """TypeError (or PayloadTooLarge) for an argument a RemoteInterface refused."""
    detail = str(violation.args[0]) if getattr(violation, "args", None) else str(violation)
    found = re.search(r"\((\w+)=\)", str(violation))
    what = f"argument {found.group(1)!r} of {method}" if found else f"an argument of {method}"
    too_large = any(word in detail for word in _SIZE_WORDS)
    capped = re.search(r"STRING token too large: (\d+)>(\d+)", detail)
    if refused_there and capped:  # a Serialized over the receiver's payload cap
        size, limit = int(capped.group(1)), int(capped.group(2)) - SERIALIZED_OVERHEAD
        message = (f"{what} was refused by {peer} as too large: a value of {size} bytes "
                   f"serialized is over its payload cap of {limit} bytes; send it in smaller "
                   f"pieces (scatter, several pushes) or start the controller with a larger "
                   f"--payload-cap")
    elif refused_there:
        message = f"{what} was refused by {peer}{' as too large' if too_large else ''}: {detail}"
    elif too_large:
        message = f"{what} is too large to send to {peer}: {detail}"
    else:
        message = f"{what} cannot be sent to {peer} (wrong type or form): {detail}"
    return errors.PayloadTooLarge(message) if too_large else TypeError(message)


def call_failure(failure, method, peer, error_class, lost_message):
    """Translate the failure of a ``callRemote(method)`` to ``peer`` into an exception.

    * an argument refused by a RemoteInterface constraint (here or on the
      other side): TypeError, or PayloadTooLarge when it is too big;
    * the connection gone: ``error_class(lost_message)``;
    * anything else (a fault in the other side's adapter, not a user error):
      ``error_class`` naming the remote exception.
    """
    if failure.check(Violation):
        return _violation_error(failure.value, method, peer, False)
    if failure.check(*_CONNECTION_LOST):
        return error_class(lost_message)
    if failure.check(RemoteException):
        remote = failure.value.args[0] if failure.value.args else None
        if isinstance(remote, Failure) and remote.check(Violation):
            return _violation_error(remote.getErrorMessage(), method, peer, True)
        if isinstance(remote, Failure):
            ename = getattr(remote.type, "__name__", None) or str(remote.type).rsplit(".", 1)[-1]
            return error_class(f"{peer} failed in {method}: {ename}: {remote.getErrorMessage()}")
    return error_class(f"{method} to {peer} failed: {failure.type.__name__}: "
                       f"{failure.getErrorMessage()}")


# -- making records -----------------------------------------------------------------


def record_from_exception(exc, include_exception=True):
    """Describe ``exc`` as an ErrorRecord.

    Engines include the pickled exception (when it pickles) so the client
    can rebuild the original type; the controller never unpickles it.
    """
    if isinstance(exc, Failure):
        exc = exc.value
    if isinstance(exc, WireError):
        return exc.record
    if isinstance(exc, errors.CompositeError):
        failed = set(exc.failed)
        results = {"values": [None if k in failed else v for k, v in enumerate(exc.results)],
                   "failed": list(exc.failed), "ids": list(exc.engine_ids)}
        return ErrorRecord("CompositeError", str(exc), errors.__name__, message=exc.message,
                           errors=[record_from_exception(value, include_exception)
                                   for _, value, _ in exc.elist], results=results)
    info = getattr(exc, errors.ENGINE_INFO_ATTR, None) or {}
    tb_text = getattr(exc, errors.TRACEBACK_ATTR, None) or ""
    pickled = None
    if include_exception and info:
        try:
            pickled = serialize.serialize(exc)
        except errors.SerializationError:
            pickled = None
    if isinstance(exc, errors.RemoteError):
        return ErrorRecord(exc.ename, exc.evalue, "", exc.traceback, exc.engine_info, pickled)
    return ErrorRecord(type(exc).__name__, str(exc), type(exc).__module__, tb_text, info, pickled)


# -- rebuilding exceptions -----------------------------------------------------------


def _lookup_safe_class(module, name):
    """An exception class named by a record, looked up without importing anything."""
    if module == errors.__name__:
        candidate = getattr(errors, name, None)
    elif module == "builtins":
        candidate = getattr(builtins, name, None)
    else:
        return None
    if isinstance(candidate, type) and issubclass(candidate, BaseException):
        return candidate
    return None


def exception_from_record(record):
    """Rebuild the exception described by ``record`` (client side)."""
    if record.ename == "CompositeError" and record.module == errors.__name__:
        elist = []
        for sub in record.errors:
            value = exception_from_record(sub)
            elist.append((type(value), value, None))
        return errors.CompositeError(record.message, elist, *_composite_results(
            record, elist)).note_engine_tracebacks()
    exc = None
    if record.exception is not None:
        try:
            candidate = serialize.unserialize(record.exception)
            if isinstance(candidate, BaseException):
                exc = candidate
        except Exception:
            exc = None
    if exc is None:
        cls = _lookup_safe_class(record.module, record.ename)
        if cls is not None:
            try:
                exc = cls(record.evalue)
            except Exception:
                exc = None
    if exc is None:
        return errors.note_engine_traceback(errors.RemoteError(
            record.ename, record.evalue, record.traceback, record.engine_info))
    if record.engine_info:
        errors.tag_exception(exc, record.engine_info.get("engine_id"),
                             record.engine_info.get("method", "?"), record.traceback)
        errors.show_engine_traceback(exc)  # IPython and Jupyter show the engine's traceback
    return exc


def _decoded(value):
    try:
        return decode_values(value)
    except Exception as exc:  # one engine's result must not hide the others'
        return exc


def _composite_results(record, elist):
    """``(results, engine_ids, failed)`` of a CompositeError record: the
    successes decoded, the errors of ``elist`` at the failed positions."""
    carried = record.results
    if not isinstance(carried, dict) or not isinstance(carried.get("values"), list):
        return None, None, None
    values = [_decoded(v) for v in carried["values"]]
    failed = [k for k in carried.get("failed") or [] if isinstance(k, int) and 0 <= k < len(values)]
    if len(failed) == len(elist):
        for k, (_, exc, _) in zip(failed, elist):
            values[k] = exc
    ids = carried.get("ids")
    return values, ids if isinstance(ids, list) else None, failed


def raise_if_error(outcome):
    """Return ``outcome``, or raise the exception it records."""
    if isinstance(outcome, ErrorRecord):
        raise exception_from_record(outcome)
    return outcome
