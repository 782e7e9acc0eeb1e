"""The task farm over Foolscap: the controller side.

A client sends a task as a *spec*: plain control fields the controller
needs (kind, retries, clear_before/after, after, recovery) and an opaque
body of Serialized frames.  The controller wraps the spec in a
:class:`WireTask` and schedules it like any task; only the engine unpickles
the body.  Results stay opaque too (Serialized values, ErrorRecords).
"""
import time
import weakref

from foolscap.api import Referenceable
from twisted.internet import defer
from twisted.python import components
from twisted.python.failure import Failure
from zope.interface import implementer

from ipkernel import fcutil, framing, serialize, wire
from ipkernel.datachannel import refs
from ipkernel.error import TaskRejectError
from ipkernel.interfaces.remote import RITaskController
from ipkernel.interfaces.task import ITaskController
from ipkernel.lane import OffersLane
from ipkernel.task.results import plain_frame
from ipkernel.task.tasks import BaseTask, TaskResult

#: What FCTaskControllerFromTaskController answers to ``get_client_name``.
CLIENT_NAME = "ipkernel.client.fctask.FCTaskClient"
KINDS = ("string", "map")
_SPEC_KEYS = {"kind", "retries", "clear_before", "clear_after", "after", "recovery", "body"}
_BODY_KEYS = {"func", "args", "kwargs", "depend"}
_ERROR_MODULE = TaskRejectError.__module__
#: Recovery tasks may nest, but not without end.
MAX_RECOVERY_DEPTH = 16


def _check_spec(spec, depth=0):
    if not isinstance(spec, dict) or set(spec) - _SPEC_KEYS or "body" not in spec:
        raise TypeError("a task spec is a dict with the keys kind, retries, clear_before, "
                        "clear_after, after, recovery and body")
    if spec.get("kind") not in KINDS:
        raise ValueError(f"a task's kind is one of {KINDS}, not {spec.get('kind')!r}")
    body = spec["body"]
    if (not isinstance(body, dict) or set(body) - _BODY_KEYS
            or not {"func", "args", "kwargs"} <= set(body)
            or not all(isinstance(v, serialize.Serialized) for v in body.values())):
        raise TypeError("a task body is a dict of Serialized frames: func, args, kwargs "
                        "and optionally depend")
    if spec.get("recovery") is not None:
        if depth >= MAX_RECOVERY_DEPTH:
            raise ValueError(f"recovery tasks nest more than {MAX_RECOVERY_DEPTH} deep")
        _check_spec(spec["recovery"], depth + 1)


class WireResult(TaskResult):
    """A StringTask's outcome kept opaque on the controller: ``payload`` is
    the Serialized ``{name: value}`` dict, or ``failure`` an ErrorRecord."""

    def __init__(self, payload, engineid, failure=None):
        super().__init__({}, engineid, failure=failure)
        self.payload = payload

    def to_wire(self):
        """``('string', ok, payload-or-record, meta)`` for the client."""
        meta = {"engineid": self.engineid, "taskid": self.taskid,
                "submitted": self.submitted, "completed": self.completed,
                "duration": self.duration}
        if self.failure is None:
            return ("string", True, self.payload, meta)
        return ("string", False, self.failure, meta)


class WireTask(BaseTask):
    """A task the controller schedules without unpickling it (see module doc).

    ``checked``: the spec was already checked.  ``args``: the call's args
    when the spec is a bulk submission's template (whose body has none): the
    task then shares the template's body instead of copying it, and keeps
    small plain args as bytes, so a bulk submission makes few objects per
    task (small objects alive at a peak keep CPython's arenas from being
    given back).
    """

    def __init__(self, spec, checked=False, args=None):
        if not checked:
            _check_spec(spec)
        recovery = spec.get("recovery")
        super().__init__(clear_before=spec.get("clear_before", False),
                         clear_after=spec.get("clear_after", False),
                         retries=spec.get("retries", 0),
                         recovery_task=WireTask(recovery) if recovery is not None else None,
                         after=spec.get("after"))
        self.kind = spec["kind"]
        self._body = spec["body"]
        if args is None:
            self._args = self._body["args"]
        else:
            frame = plain_frame(args)
            self._args = args if frame is None else bytes(frame)

    @property
    def args(self):
        """The call's args (a Serialized)."""
        args = self._args
        return serialize.Serialized(args) if type(args) is bytes else args

    @property
    def body(self):
        """The body as a spec holds it: func, args, kwargs and maybe depend."""
        return dict(self._body, args=self.args)

    @property
    def batchable(self):
        return "depend" not in self._body and not (self.clear_before or self.clear_after)

    def call(self):
        return self._body["func"], self.args, self._body["kwargs"]

    async def _submit(self, engine):
        gate = self._body.get("depend")
        if gate is not None:
            await engine.apply(gate, (engine.id,))
        return await kept_whole(engine, await engine.apply(*self.call()))

    def submit(self, engine):
        return defer.ensureDeferred(self._submit(engine))

    def run_failure(self, failure):
        # A TaskRejectError raised on the engine (by the depend gate or by the
        # task's own code) arrives as a record: turn it back into the error
        # the TaskController routes to another engine.
        exc = failure.value
        if (isinstance(exc, wire.WireError) and exc.record.ename == "TaskRejectError"
                and exc.record.module == _ERROR_MODULE):
            return Failure(TaskRejectError(exc.record.evalue))
        return failure

    def finish(self, success, result):
        if self.kind == "map":
            return success, result
        if success:
            tr = WireResult(result, self._engineid)
        else:
            tr = WireResult(None, self._engineid, failure=wire.record_from_exception(result))
        tr.taskid = self.taskid
        tr.submitted, tr.completed, tr.duration = self.submitted, self.completed, self.duration
        return True, tr


async def kept_whole(engine, value):
    """``value`` with the large parts the engine sent on the data channel
    fetched into it: the controller keeps task results, and task clients
    have no data channel to fetch them from."""
    remote = getattr(engine, "engine", engine)  # a QueuedEngine wraps the RemoteEngine
    fetch = getattr(remote, "fetch_blob", None)
    if fetch is None or not refs.blob_ids(value):
        return value
    return await refs.resolve(value, fetch)


def _record(failure):
    return wire.record_from_exception(failure.value, include_exception=False)


def _to_wire(value):
    if isinstance(value, WireResult):
        return value.to_wire()
    if isinstance(value, TaskResult):  # a task submitted in process: not ours to open
        raise TypeError("this result was produced by an in-process task")
    return ("map", value)


def tasks_from_wire(templates, refs, args):
    """WireTasks of a bulk submission: task k is ``templates[refs[k]]`` with
    the k-th packed args as its body's ``args``."""
    indexes = framing.unpack_ints(refs)
    call_args = framing.unpack(args)
    if len(indexes) != len(call_args):
        raise ValueError(f"{len(call_args)} tasks' args but {len(indexes)} template indexes")
    for n, template in enumerate(templates):
        if not isinstance(template, dict) or not isinstance(template.get("body"), dict):
            raise TypeError(f"task template {n} is not a task spec")
        try:
            _check_spec(dict(template, body=dict(template["body"], args=_NO_ARGS)))
        except Exception as exc:
            raise type(exc)(f"task template {n}: {exc}") from None
    if indexes and max(indexes) >= len(templates):
        raise IndexError("a task refers to a template that was not sent")
    return [WireTask(templates[index], checked=True, args=task_args)
            for index, task_args in zip(indexes, call_args)]


_NO_ARGS = serialize.Serialized([b""])


def results_to_wire(pairs):
    """The wire form of ``get_task_results``: ``(indexes, values, others)``:
    the ok map results (most of a map) packed, with their positions as
    packed ints; every other outcome (a StringTask's result, None, an
    ErrorRecord) in ``others``, in order."""
    indexes, values, others = [], [], []
    for k, (ok, value) in enumerate(pairs):
        if ok and isinstance(value, serialize.Serialized):
            indexes.append(k)
            values.append(value)
        else:
            others.append(_pair_to_wire(ok, value))
    return framing.pack_ints(indexes), framing.pack(values), others


def _result_to_wire(value):
    return None if value is None else _to_wire(value)


def _pair_to_wire(ok, value):
    if not ok:
        return _record(value)
    try:
        return _result_to_wire(value)
    except Exception:
        return _record(Failure())


def _check_ids(ids):
    if ids is None:
        return None
    return [int(i) for i in ids]


@implementer(RITaskController)
class FCTaskControllerFromTaskController(OffersLane, Referenceable):
    """Adapter ITaskController -> RITaskController (thin translation).

    Each ``remote_*`` method returns the value or an ErrorRecord; nothing a
    client sent is unpickled here.
    """

    def __init__(self, taskcontroller):
        self.taskcontroller = taskcontroller
        self._sessions = weakref.WeakSet()  # the sessions opened from this one
        #: For the dashboard: the client's address, when it opened, its calls so far.
        self.peer = None
        self.opened = time.monotonic()
        self.calls = 0
        self.closed = False

    def doRemoteCall(self, methodname, args, kwargs):
        # every call, on Foolscap or on a lane, comes through here
        self.calls += 1
        return super().doRemoteCall(methodname, args, kwargs)

    def remote_open_session(self, canary=None):
        session = type(self)(self.taskcontroller)
        session.lane_server = self.lane_server
        self._sessions.add(session)
        if canary is not None:
            session._canary = canary
            session.peer = fcutil.peer_of(canary)
            try:
                canary.notifyOnDisconnect(session.client_gone)
            except Exception:  # noqa: B902 - shown as connected until the client drops it
                pass
        return session

    def client_gone(self):
        """This session's client disconnected."""
        self.closed = True

    def _call(self, method, *args):
        try:
            d = defer.maybeDeferred(getattr(self.taskcontroller, method), *args)
        except Exception:
            d = defer.fail()
        return d.addErrback(_record)

    def remote_get_client_name(self):
        return CLIENT_NAME

    def remote_run(self, task):
        try:
            wrapped = WireTask(task)
        except Exception:
            return _record(Failure())
        return self._call("run", wrapped)

    def remote_get_task_result(self, taskid, block=False):
        d = defer.maybeDeferred(self.taskcontroller.get_task_result, taskid, block)
        d.addCallback(_result_to_wire)
        return d.addErrback(_record)

    def remote_run_many(self, templates, refs, args):
        try:
            tasks = tasks_from_wire(templates, refs, args)
        except Exception:
            return _record(Failure())
        return self._call("run_many", tasks)

    def remote_get_task_results(self, taskids, block=False):
        d = defer.maybeDeferred(self.taskcontroller.get_task_results, list(taskids), block)
        d.addCallback(results_to_wire)
        return d.addErrback(_record)

    def remote_abort(self, taskid):
        return self._call("abort", taskid)

    def remote_barrier(self, taskids):
        return self._call("barrier", list(taskids))

    def remote_spin(self):
        return self._call("spin")

    def remote_queue_status(self, verbose=False):
        return self._call("queue_status", bool(verbose))

    def remote_clear(self, taskids, all_results):
        return self._call("clear", None if all_results else _check_ids(taskids))


if components.getAdapterFactory(ITaskController, RITaskController, None) is None:
    components.registerAdapter(FCTaskControllerFromTaskController, ITaskController,
                               RITaskController)
