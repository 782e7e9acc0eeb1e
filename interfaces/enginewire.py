"""How each engine method travels between the controller and an engine.

One row per method of :class:`~ipkernel.interfaces.engine.IEngineBase`:
the kind of each argument on the wire, the kind of its result, and whether
it waits its turn in the engine's queue.  The layers that carry these calls
are built from it: the controller's proxy of an engine
(``ipkernel.controller.fc.RemoteEngine``), the engine's Foolscap wrapper
(``ipkernel.engine.fc.FCEngineFromService``) and the queue
(:class:`ipkernel.engine.queued.QueuedEngine`).  A layer writes a method out
by hand only where it does more than its kinds say (keeping a mirror of the
properties, say).  The wire entries themselves, the engine methods of
:class:`ipkernel.interfaces.remote.RIEngine`, are made from it too (but
``apply_batch``, whose calls travel packed).

Argument kinds (what the controller sends; what the engine does first):

* ``CODE``: a str, as it is;
* ``NAMESPACE``: a dict name -> value, serialized, bulk data on the data
  channel; ``FUNCTIONS``: the same, of functions;
* ``SERIALIZED``: a dict name -> Serialized, sent as it is;
* ``OBJECT``: one value, serialized, bulk data on the data channel;
* ``KEYS``: a name or a list of names in the tagged keys form (None where
  the method's keys are optional);
* ``LINE``: an optional line of text (``complete``);
* ``NUMBER``: a command number or None;
* ``PROPERTIES``: a dict of plain data.

Result kinds: ``PLAIN`` (plain data), ``JSON`` (plain data sent as one JSON
token), ``VALUE`` (user data, serialized in the engine's user thread; large
parts on the data channel), ``SERIALIZED_VALUES`` (Serialized values, not
rebuilt), ``BATCH`` (apply_batch's packed outcomes).
"""
from dataclasses import dataclass

CODE, NAMESPACE, FUNCTIONS, SERIALIZED, OBJECT, KEYS, LINE, NUMBER, PROPERTIES = (
    "code", "namespace", "functions", "serialized", "object", "keys", "line", "number",
    "properties")
PLAIN, JSON, VALUE, SERIALIZED_VALUES, BATCH = "plain", "json", "value", "serialized values", \
    "batch"

#: Argument kinds whose values may hold references to bulk data on the data channel.
WITH_BULK_DATA = frozenset({NAMESPACE, FUNCTIONS, SERIALIZED, OBJECT})


@dataclass(frozen=True)
class EngineCall:
    """One engine method on the wire."""

    name: str
    args: tuple = ()
    result: str = PLAIN
    #: waits its turn in the engine's queue (else answered at once, beside it)
    queued: bool = True
    #: the engine service's method that does it (default: ``name``)
    service_method: str = None

    @property
    def implementation(self):
        return self.service_method or self.name


#: The rows: one :class:`EngineCall` per engine method.
#:
#: :meta hide-value:
ENGINE_CALLS = (
    EngineCall("execute", (CODE,), JSON),
    EngineCall("push", (NAMESPACE,), service_method="push_serialized"),
    EngineCall("pull", (KEYS,), VALUE),
    EngineCall("push_function", (FUNCTIONS,)),
    EngineCall("pull_function", (KEYS,), VALUE),
    EngineCall("apply", (OBJECT, OBJECT, OBJECT), VALUE),
    EngineCall("apply_batch", (OBJECT,), BATCH),
    EngineCall("starmap", (OBJECT, OBJECT), VALUE),
    EngineCall("complete", (CODE, LINE)),
    EngineCall("get_result", (NUMBER,), queued=False),
    EngineCall("reset", queued=False),
    EngineCall("kill", queued=False),
    EngineCall("keys"),
    EngineCall("interrupt", queued=False),
    EngineCall("push_serialized", (SERIALIZED,)),
    EngineCall("pull_serialized", (KEYS,), SERIALIZED_VALUES),
    EngineCall("set_properties", (PROPERTIES,)),
    EngineCall("get_properties", (KEYS,)),
    EngineCall("del_properties", (KEYS,)),
    EngineCall("has_properties", (KEYS,)),
    EngineCall("clear_properties"),
)

#: name -> EngineCall
BY_NAME = {call.name: call for call in ENGINE_CALLS}
