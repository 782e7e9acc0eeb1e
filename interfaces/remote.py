"""Foolscap RemoteInterfaces: what travels between client, controller and engine.

Control data (engine ids, targets, keys, flags, code text) is typed and
bounded here.  User data (namespaces, functions, arguments, results,
exceptions) travels as ``Serialized`` copyables (opaque frames made by
:mod:`ipkernel.serialize`) inside ``Any()`` slots; its size is capped by the
receiver's configured payload cap.  Every method that can fail with a user
or ipkernel error returns an ``ErrorRecord`` copyable instead of raising, so
the error keeps its type and engine labels across the wire.

The entries of :class:`RIEngine` and :class:`RIMultiEngine` that carry an
engine or multi-engine method are not written out: they are made from the
rows of :data:`~ipkernel.interfaces.enginewire.ENGINE_CALLS` and
:data:`~ipkernel.interfaces.multienginewire.MULTIENGINE_CALLS`.  An entry's
argument names are its interface's (``IEngineBase``,
``IFullSynchronousMultiEngine``; or the row's ``wire_names``), then
``targets`` and ``block`` where the row takes them; each argument's
constraint is the one named here for its kind; the entry answers
``Outcome``.  Only the connection's own methods, and the methods whose wire
form is not their row's (``apply_batch``, ``get_ids``), are written out.

Wire names (``__remote_name__``) never change; a new version gets a new name.
"""
import inspect

from foolscap.api import (Any, ChoiceOf, DictOf, IntegerConstraint, ListOf, RemoteInterface,
                          TupleOf)
from foolscap.constraint import Optional
from foolscap.remoteinterface import RemoteInterfaceClass, RemoteMethodSchema
from foolscap.schema import BooleanConstraint, ByteStringConstraint, UnicodeConstraint

from ipkernel.interfaces import enginewire, multienginewire
from ipkernel.interfaces.engine import IEngineBase
from ipkernel.interfaces.multiengine import IFullSynchronousMultiEngine

MAX_ENGINES = 100_000
MAX_KEYS = 100_000
#: Calls in one engine batch, tasks in one bulk submission.
MAX_BATCH = 10_000
#: Many values in one bytes object (ipkernel.framing); capped by the receiver.
PackedBytes = Any()

#: An engine id (small non-negative int).
EngineId = IntegerConstraint(8)
#: Targets, tagged (Foolscap cannot choose between a scalar and a list on
#: the way in): ``('all', [])``, ``('one', [id])`` or ``('list', [ids])``.
Targets = TupleOf(UnicodeConstraint(8), ListOf(EngineId, maxLength=MAX_ENGINES))
#: A variable name.
Key = UnicodeConstraint(1024)
#: Keys, tagged: ``('one', [name])``, ``('list', [names])`` or ``('none', [])``.
Keys = TupleOf(UnicodeConstraint(8), ListOf(Key, maxLength=MAX_KEYS))
#: Keys where the method's keys are optional (the same constraint: ``('none', [])``
#: is how None travels).
OptionalKeys = Keys
#: Source text sent to engines (64 MiB).
Code = UnicodeConstraint(64 * 2 ** 20)
#: An optional source line, tagged as a list of zero or one str: Foolscap's
#: str unslicer cannot take ``ChoiceOf(None, str)`` (it drops the connection).
OptionalLine = ListOf(Code, maxLength=1)
#: A pending-result id (40 hex chars).
DeferredId = UnicodeConstraint(64)
#: A FURL.
Furl = UnicodeConstraint(2000)
#: True or False: ``block``, and the other flags.
Block = BooleanConstraint()
#: A command number, or None (the latest).
CommandNumber = ChoiceOf(None, IntegerConstraint(8))
#: An engine's properties: a dict of plain data.
Properties = DictOf(Key, Any(), maxKeys=MAX_KEYS)
#: User data: Serialized copyables (and lists/dicts of them); capped by the receiver.
Payload = Any()
#: A successful value or an ErrorRecord copyable.
Outcome = Any()
#: Where and how to open a lane: ``(port, token, tls_always)`` (the lane is
#: at the address this connection reached; TLS off loopback, and on it too
#: when ``tls_always``).
LaneOffer = TupleOf(IntegerConstraint(8), ByteStringConstraint(64), BooleanConstraint(),
                    UnicodeConstraint(4096))

# The constraint (its name here) of each argument kind of the tables; KEYS
# whose interface argument has a default is OptionalKeys.
_KIND_CONSTRAINTS = {
    enginewire.CODE: "Code", enginewire.NAMESPACE: "Payload", enginewire.FUNCTIONS: "Payload",
    enginewire.SERIALIZED: "Payload", enginewire.OBJECT: "Payload", enginewire.KEYS: "Keys",
    enginewire.LINE: "OptionalLine", enginewire.NUMBER: "CommandNumber",
    enginewire.PROPERTIES: "Properties", multienginewire.FLAG: "Block",
    multienginewire.KEY: "Key", multienginewire.PARTS: "Payload",
    multienginewire.DEFERRED_ID: "DeferredId",
}


def _entry(arguments, doc):
    """A RemoteInterface entry answering ``Outcome``: ``arguments`` lists
    ``(argument name, name of its constraint in this module)`` in wire order.

    The entry keeps the constraint names (``constraint_names``, for the
    reference docs: Keys and OptionalKeys are one object) and ``doc``."""
    names = [name for name, _ in arguments]
    reserved = {"method", "_response"} & set(names)  # RemoteMethodSchema's own parameters
    if reserved:
        raise TypeError(f"a wire argument cannot be named {', '.join(sorted(reserved))}")
    schema = RemoteMethodSchema(_response=Outcome,
                                **{name: globals()[c] for name, c in arguments})
    schema.constraint_names = tuple(c for _, c in arguments)
    schema.__doc__ = doc
    return schema


def _arguments(call, contract, wire_names=()):
    """``(name, constraint name)`` of the arguments of the row ``call`` (before
    ``targets`` and ``block``): the names are ``contract``'s unless
    ``wire_names`` are given."""
    info = contract[call.name].getSignatureInfo()
    names = list(wire_names) or [n for n in info["positional"] if n not in ("targets", "block")]
    if len(names) != len(call.args):
        raise TypeError(f"{call.name}: the row has {len(call.args)} arguments, the wire "
                        f"{names} (a row whose wire names are not the interface's gives "
                        f"its wire_names)")
    arguments = []
    for name, kind in zip(names, call.args):
        constraint = _KIND_CONSTRAINTS[kind]
        if kind == enginewire.KEYS and not wire_names and name in info["optional"]:
            constraint = "OptionalKeys"
        arguments.append((name, constraint))
    return arguments


def _entry_doc(call, contract, table, note, doc=""):
    """The docstring of the entry made from the row ``call`` of ``table``."""
    declared = contract[call.name].interface
    method = f"{declared.__name__}.{call.name}"
    kinds = ", ".join(call.args) or "none"
    made = (f"The wire form of :meth:`{method} <{declared.__module__}.{method}>`, made from "
            f"its row of :data:`~{table}` (argument kinds: {kinds}; result: "
            f"{call.result}{note}).")
    return f"{inspect.cleandoc(doc)}\n\n{made}" if doc else made


def _engine_entry(call):
    """RIEngine's entry for the row ``call`` of ENGINE_CALLS."""
    note = "; queued" if call.queued else "; answered at once, beside the queue"
    doc = _entry_doc(call, IEngineBase, "ipkernel.interfaces.enginewire.ENGINE_CALLS", note)
    return _entry(_arguments(call, IEngineBase), doc)


def _multiengine_entry(call):
    """RIMultiEngine's entry for the row ``call`` of MULTIENGINE_CALLS."""
    contract = IFullSynchronousMultiEngine
    note = ""
    if call.wire_names:
        interface_names = [n for n in contract[call.name].getSignatureInfo()["positional"]
                           if n != "targets"]
        note = (f"; on the wire ``{', '.join(call.wire_names)}`` in place of the "
                f"interface's ``{', '.join(interface_names)}``: the client splits or joins "
                f"the data")
    doc = _entry_doc(call, contract, "ipkernel.interfaces.multienginewire.MULTIENGINE_CALLS",
                     note, call.doc)
    arguments = _arguments(call, contract, call.wire_names)
    arguments += [("targets", "Targets")] if call.targets else []
    arguments += [("block", "Block")] if call.block else []
    return _entry(arguments, doc)


def _made_from(calls, make_entry):
    """The metaclass of a RemoteInterface whose class body writes out only some
    entries: the others are ``make_entry(row)`` for each row of ``calls`` the
    body does not write.  The body's entries that have no row come first,
    then one per row, in the table's order."""
    def remote_interface(name, bases, namespace):
        rows = {call.name for call in calls}
        attrs = {key: value for key, value in namespace.items() if key not in rows}
        for call in calls:
            attrs[call.name] = namespace[call.name] if call.name in namespace \
                else make_entry(call)
        return RemoteInterfaceClass(name, bases, attrs)
    return remote_interface


class RIEngine(RemoteInterface, metaclass=_made_from(enginewire.ENGINE_CALLS, _engine_entry)):
    """An engine, as the controller sees it (the engine passes this at registration).

    One entry per row of :data:`~ipkernel.interfaces.enginewire.ENGINE_CALLS`,
    made from the row (``apply_batch`` is written out: its calls travel
    packed), and the link's own methods.
    """

    __remote_name__ = "RIEngine.v1.ipkernel"

    def get_id():
        return ChoiceOf(None, EngineId)

    def set_id(id=EngineId):
        return None

    def ping():
        """Heartbeat: answered from the reactor thread even while user code runs."""
        return int

    def controller_stopping():
        """The controller is shutting down deliberately (not crashing): sent to
        every engine before it closes (``ipengine`` then waits ``--stop-wait``
        seconds for it to come back, and exits)."""
        return None

    def stats():
        """What the engine process uses now, answered from the reactor thread:
        ``{"rss": resident bytes, "cpu": CPU seconds of all its threads}``
        (the dashboard's memory and CPU columns)."""
        return DictOf(UnicodeConstraint(8), ChoiceOf(int, float), maxKeys=4)

    def pulse():
        """Where the engine's pulse process listens: ``["udp", port, key hex]``, or
        ``[]`` (see :mod:`ipkernel.engine.pulse`)."""
        return ListOf(UnicodeConstraint(128), maxLength=3)

    def apply_batch(shared=ListOf(Payload, maxLength=MAX_BATCH), refs=PackedBytes,
                    args=PackedBytes):
        """Many applies in one message (see IEngineBase.apply_batch).

        ``shared``: the distinct functions and kwargs of the batch;
        ``refs``: two indexes into ``shared`` per call (function, kwargs),
        packed ints; ``args``: each call's args, packed (ipkernel.framing).
        Returns ``(status, times, values, errors)``: per call 1 (ok), 0
        (failed) or 2 (not run) as packed ints; started/finished times as
        packed floats; the ok values, packed; the ErrorRecords of the failed
        calls, in order."""
        return Outcome


#: Longest text of one output chunk (characters): an engine splits longer writes.
MAX_OUTPUT_TEXT = 1 << 20
#: Chunks in one output message.
MAX_OUTPUT_CHUNKS = 1024
#: A stream name: ``'stdout'`` or ``'stderr'``.
StreamName = UnicodeConstraint(8)
#: Text written by user code on an engine.
OutputText = UnicodeConstraint(MAX_OUTPUT_TEXT)


class RIEngineOutput(RemoteInterface):
    """Where an engine publishes what its user code writes while a command runs
    (given to the engine in its registration reply, as ``'output'``).

    The controller hands each chunk to the client whose call the engine is
    running (see :mod:`ipkernel.controller.output`); output of a command
    nobody listens to is dropped there."""

    __remote_name__ = "RIEngineOutput.v1.ipkernel"

    def output(chunks=ListOf(TupleOf(StreamName, OutputText), maxLength=MAX_OUTPUT_CHUNKS)):
        """``chunks``: ``(stream name, text)`` pairs, in the order written.
        Answered once the controller has taken them: an engine that waits
        for the answer before it answers the command knows its output went
        first."""
        return None

    def input(prompt=OutputText):
        """``input(prompt)`` called by user code: the answer of the client
        whose call the engine runs, when that call waits interactively
        (``%px``, a streaming blocking call); else the call fails saying so."""
        return OutputText


class RIOutputListener(RemoteInterface):
    """A client's listener for the output of its calls (the ``canary`` it
    gives ``open_session``)."""

    __remote_name__ = "RIOutputListener.v1.ipkernel"

    def output(chunks=ListOf(TupleOf(DeferredId, EngineId, StreamName, OutputText),
                             maxLength=MAX_OUTPUT_CHUNKS)):
        """``(call id, engine id, stream name, text)`` for each chunk, in the
        order the engines wrote them (the call id: the pending-result id of
        the client's non-blocking call).  A chunk the controller had to drop
        to stay within its cap is replaced by a note saying so (stream
        ``'stderr'``)."""
        return None

    def input(call_id=DeferredId, engine_id=EngineId, prompt=OutputText):
        """Ask the user of call ``call_id`` for a line (``input(prompt)`` on
        engine ``engine_id``); fails when nobody waits for that call
        interactively."""
        return OutputText


class RIEngineRegistrar(RemoteInterface):
    """The controller's engine-facing object (``ipcontroller-engine.furl``)."""

    __remote_name__ = "RIEngineRegistrar.v1.ipkernel"

    def register_engine(engine=RIEngine, id=ChoiceOf(None, EngineId),
                        pid=ChoiceOf(None, IntegerConstraint(8)),
                        properties=Properties):
        """Register ``engine``; return ``{'id': assigned_id}``, with
        ``'data': [port, token, tls_always]`` when the controller has a data
        channel and ``'lane': [port, token, tls_always, local_path]`` when it
        offers a lane.  When either is offered, the engine counts as
        registered (in ``get_ids``, a target of ``'all'``, given tasks) only once it called
        :meth:`channels_joined`, or after a bounded wait."""
        return DictOf(UnicodeConstraint(16), Any())

    def channels_joined(id=EngineId):
        """The engine ``id`` has joined (or given up joining) the channels its
        registration offered; it is registered when this returns."""
        return None


class RIEngineGate(RemoteInterface):
    """The controller's engine registration that needs a credential
    (``ipcontroller-engine-gate.furl``; see :mod:`ipkernel.credentials`)."""

    __remote_name__ = "RIEngineGate.v1.ipkernel"

    def register_engine(credential=UnicodeConstraint(200), engine=RIEngine,
                        id=ChoiceOf(None, EngineId), pid=ChoiceOf(None, IntegerConstraint(8)),
                        properties=Properties):
        """As ``RIEngineRegistrar.register_engine``, with the engine's
        ``credential``; the reply also holds ``'rejoin'``: the credential for
        registering again under the same id.  A refused credential raises
        an error that says why."""
        return DictOf(UnicodeConstraint(16), Any())

    def channels_joined(id=EngineId):
        """As ``RIEngineRegistrar.channels_joined``."""
        return None


class RIMultiEngine(RemoteInterface,
                    metaclass=_made_from(multienginewire.MULTIENGINE_CALLS,
                                         _multiengine_entry)):
    """The controller's multi-engine view for clients (``ipcontroller-mec.furl``).

    Every method of IFullSynchronousMultiEngine: ``block=False`` returns a
    deferred id.  ``scatter`` and ``raw_map`` take data already split by the
    client (the controller cannot look inside user data; so ``scatter``'s
    ``flatten`` must be False, the one-item parts flattened by the client, or
    the call fails saying so) and ``gather`` returns the parts for the client
    to join.

    One entry per row of
    :data:`~ipkernel.interfaces.multienginewire.MULTIENGINE_CALLS`, made from
    the row (``get_ids`` is written out: it answers a plain list), and the
    connection's own methods.
    """

    __remote_name__ = "RIMultiEngine.v1.ipkernel"

    def get_client_name():
        return UnicodeConstraint(200)

    def open_session(canary=Optional(Any(), None)):
        """Return a new RIMultiEngine for this client alone: its pending results
        (block=False ids) are private to it and freed when it disconnects.
        ``canary`` (a Referenceable of the client's) is how the controller
        learns of the disconnection: when its connection goes, what the
        session kept is dropped at once."""
        return Any()

    def fetch_blob(blob_id=ByteStringConstraint(16)):
        """The bulk data ``blob_id`` that a large result referred to, as
        bytes, or an ErrorRecord: the way for a client that could not join
        the data channel."""
        return Outcome

    def open_data_channel():
        """``(port, token, tls_always)`` for joining the data channel (bulk
        data beside Foolscap, see ipkernel.datachannel) on this connection's
        host; ``(0, b"", False)`` when the controller runs without one.  (A
        tuple always: Foolscap cannot choose between None and a tuple on the
        way in.)"""
        return TupleOf(IntegerConstraint(8), ByteStringConstraint(64), BooleanConstraint())

    def get_ids():
        return ListOf(EngineId, maxLength=MAX_ENGINES)

    def open_lane():
        """``(port, token, tls_always, local_path)`` for opening a lane to
        this object (its calls on a socket beside Foolscap, see
        ipkernel.lane; ``local_path``: a Unix socket for peers on this host,
        or ''); ``(0, b"", False, "")`` when the controller runs without
        lanes."""
        return LaneOffer


__all__ = ["RIEngine", "RIEngineGate", "RIEngineRegistrar", "RIMultiEngine", "RITaskController",
           "RIEngineOutput", "RIOutputListener",
           "Targets", "Keys", "Code", "EngineId", "Payload", "Outcome", "TaskId", "TaskSpec",
           # the other constraints the entries made from the tables use
           "Key", "OptionalKeys", "OptionalLine", "DeferredId", "Block", "CommandNumber",
           "Properties"]


#: A task id.
TaskId = IntegerConstraint(8)
#: The plain control fields of a task, as the client sends them: ``kind``
#: ('string' or 'map'), ``retries``, ``clear_before``, ``clear_after``,
#: ``after`` (``None`` or ``('all'|'any', [ids])``), ``recovery`` (another
#: spec or None) and ``body``: a dict of Serialized frames (``func``,
#: ``args``, ``kwargs``, optional ``depend``) that only an engine unpickles.
TaskSpec = Any()


class RITaskController(RemoteInterface):
    """The controller's load-balanced task farm for clients (``ipcontroller-tc.furl``).

    The controller never unpickles a task: it reads the plain control
    fields of a :data:`TaskSpec` and hands the opaque body to an engine.
    Results come back as ``('map', Serialized)`` or ``('string', ok,
    Serialized-or-ErrorRecord, meta)``; failures as ErrorRecord.
    """

    __remote_name__ = "RITaskController.v1.ipkernel"

    def get_client_name():
        return UnicodeConstraint(200)

    def open_session(canary=Optional(Any(), None)):
        """Return a new RITaskController for this client alone (the same task
        farm; the dashboard lists it with its address and calls).  ``canary``
        (a Referenceable of the client's) tells the controller when the
        client is gone."""
        return Any()

    def open_lane():
        """``(port, token, tls_always, local_path)`` for opening a lane to
        this object (its calls on a socket beside Foolscap, see
        ipkernel.lane; ``local_path``: a Unix socket for peers on this host,
        or ''); ``(0, b"", False, "")`` when the controller runs without
        lanes."""
        return LaneOffer

    def run(task=TaskSpec):
        return Outcome

    def get_task_result(taskid=TaskId, block=Block):
        return Outcome

    def run_many(templates=ListOf(TaskSpec, maxLength=MAX_BATCH), refs=PackedBytes,
                 args=PackedBytes):
        """Submit many tasks in one message.

        Task k is ``templates[refs[k]]`` (a TaskSpec whose body has no
        ``args``) with the k-th value packed in ``args`` as its args;
        ``refs`` are packed ints (ipkernel.framing).  Returns the ids in
        order, or one ErrorRecord (then none was submitted)."""
        return Outcome

    def get_task_results(taskids=ListOf(TaskId, maxLength=MAX_BATCH), block=Block):
        """``(indexes, values, others)``: the map results that are values,
        packed, with their positions in ``taskids`` as packed ints; the
        other outcomes (as get_task_result returns them), in order."""
        return Outcome

    def abort(taskid=TaskId):
        return Outcome

    def barrier(taskids=ListOf(TaskId, maxLength=MAX_KEYS)):
        return Outcome

    def spin():
        return Outcome

    def queue_status(verbose=Block):
        return Outcome

    def clear(taskids=ListOf(TaskId, maxLength=MAX_KEYS), all_results=Block):
        """Forget finished results: every one when ``all_results``, else ``taskids``.

        (Two arguments because Foolscap cannot choose between None and a list
        on the way in.)"""
        return Outcome
