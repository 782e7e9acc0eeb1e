"""How each multi-engine method travels between a client and the controller.

One row per method of the multi-engine view that clients call
(:class:`~ipkernel.interfaces.multiengine.IFullSynchronousMultiEngine`, on
the wire :class:`ipkernel.interfaces.remote.RIMultiEngine`): the kind of each
argument on the wire (the argument kinds of
:mod:`ipkernel.interfaces.enginewire`, and the few below), the kind of its
result, whether it takes ``targets`` and ``block``, and whether the blocking
client may make it on its direct lane.  The layers that carry these calls
make their mechanical methods from it: the controller's
``ipkernel.controller.fc.FCSynchronousMultiEngine`` (its ``remote_*``), the
async client :class:`ipkernel.client.fcmultiengine.FCFullSynchronousMultiEngineClient`,
the blocking client :class:`ipkernel.client.MultiEngineClient` (with the
row's ``doc`` as the user's docstring), the direct path's
``ipkernel.client.direct.DIRECT_METHODS`` and the wire entries themselves
(RIMultiEngine's, with the row's constraints).  A layer writes a method out by
hand only where it does more than its row says (scatter splits the data,
gather joins it, pending results keep state).

Argument kinds beside enginewire's (``CODE``, ``NAMESPACE``, ``FUNCTIONS``,
``SERIALIZED``, ``OBJECT``, ``KEYS``, ``LINE``, ``NUMBER``, ``PROPERTIES``):

* ``FLAG``: True or False (kill's ``controller``);
* ``KEY``: one variable name;
* ``PARTS``: a list of Serialized parts, one per target (split by the client);
* ``DEFERRED_ID``: a pending-result id.

Result kinds: enginewire's ``PLAIN``, ``VALUE`` (user data: its bulk data
comes on the data channel, the client rebuilds it) and
``SERIALIZED_VALUES`` (the same, left Serialized), and

* ``COMMAND_RESULTS``: the result dicts of commands, plain data sent back as
  one JSON token (the blocking client shows them as a ``ResultList``);
* ``QUEUE_STATUS``: ``(engine_id, status_dict)`` pairs (tuples again on the
  client);
* ``IDS``: the list of registered engine ids.
"""
from dataclasses import dataclass

from ipkernel.interfaces.enginewire import (CODE, FUNCTIONS, KEYS, LINE, NAMESPACE, NUMBER,
                                            OBJECT, PLAIN, PROPERTIES, SERIALIZED,
                                            SERIALIZED_VALUES, VALUE, WITH_BULK_DATA)

FLAG, KEY, PARTS, DEFERRED_ID = "flag", "key", "parts", "deferred id"
COMMAND_RESULTS, QUEUE_STATUS, IDS = "command results", "queue status", "ids"

#: Argument kinds whose values may hold references to bulk data on the data channel.
WITH_BULK = WITH_BULK_DATA | {PARTS}

__all__ = ["MultiEngineCall", "MULTIENGINE_CALLS", "BY_NAME", "WITH_BULK", "CODE", "NAMESPACE",
           "FUNCTIONS", "SERIALIZED", "OBJECT", "KEYS", "LINE", "NUMBER", "PROPERTIES", "FLAG",
           "KEY", "PARTS", "DEFERRED_ID", "PLAIN", "VALUE", "SERIALIZED_VALUES",
           "COMMAND_RESULTS", "QUEUE_STATUS", "IDS"]


@dataclass(frozen=True)
class MultiEngineCall:
    """One multi-engine method on the wire."""

    name: str
    args: tuple = ()
    result: str = PLAIN
    #: takes ``targets`` (last but one on the wire)
    targets: bool = True
    #: takes ``block`` (last on the wire; keyword-only for clients)
    block: bool = True
    #: the blocking client may make it (with ``block=True``) on its direct lane
    direct: bool = True
    #: what it does, for users: the blocking client's docstring (the
    #: interface's when empty); also the wire entry's
    doc: str = ""
    #: the names of ``args`` on the wire where they are not the interface's
    #: (the client splits or joins the data: scatter, gather, raw_map); empty:
    #: the interface's arguments, without ``targets`` and ``block``
    wire_names: tuple = ()

    @property
    def multiplexed(self):
        """Applied to targets, two-phase: the blocking client has it too."""
        return self.targets and self.block

    @property
    def bulk(self):
        """The positions of the arguments that may carry bulk data."""
        return tuple(k for k, kind in enumerate(self.args) if kind in WITH_BULK)


_C = MultiEngineCall

#: The rows: one :class:`MultiEngineCall` per multi-engine method on the wire.
#:
#: :meta hide-value:
MULTIENGINE_CALLS = (
    _C("execute", (CODE,), COMMAND_RESULTS, doc="""
        Run the Python code ``lines`` on the targets; a
        :class:`~ipkernel.client.ResultList` of their result dicts (keys
        ``id``, ``number``, ``input``, and ``stdout``/``stderr``/``display``
        when there is output).  Engine errors raise one
        :class:`~ipkernel.error.CompositeError`."""),
    _C("push", (NAMESPACE,), doc="""
        Send the names and values of the dict ``namespace`` to the targets."""),
    _C("pull", (KEYS,), VALUE, doc="""
        Fetch a name (``keys`` a str) or several names (a list/tuple) from
        each target: one value (or list of values) per target."""),
    _C("push_function", (FUNCTIONS,), doc="""
        Send functions (a dict name -> function) to the targets."""),
    _C("pull_function", (KEYS,), VALUE, doc="""
        Fetch functions by name from the targets."""),
    _C("apply", (OBJECT, OBJECT, OBJECT), VALUE, doc="""
        Call ``func(*args, **kwargs)`` on each target; one return value per target."""),
    _C("complete", (CODE, LINE), doc="""
        Tab completions of ``text`` in each target's namespace."""),
    _C("get_result", (NUMBER,), COMMAND_RESULTS, doc="""
        The result dict of command number ``i`` (None: the latest) of each
        target, as a :class:`~ipkernel.client.ResultList`."""),
    _C("reset", doc="""
        Clear the user namespace of each target."""),
    _C("keys", doc="""
        The user-defined names of each target."""),
    _C("kill", (FLAG,), direct=False, doc="""
        Stop the target engines; with ``controller=True`` stop every engine
        and then the controller."""),
    _C("interrupt", direct=False, doc="""
        Raise KeyboardInterrupt in the code running on each target; one bool
        per target (whether something was running)."""),
    _C("push_serialized", (SERIALIZED,), doc="""
        Send already serialized values (a dict name ->
        :class:`ipkernel.serialize.Serialized`)."""),
    _C("pull_serialized", (KEYS,), SERIALIZED_VALUES, doc="""
        Fetch values without rebuilding them: Serialized objects."""),
    _C("clear_queue", doc="""
        Discard the commands waiting in each target's queue (they fail with
        :class:`~ipkernel.error.QueueCleared`)."""),
    _C("queue_status", (), QUEUE_STATUS, doc="""
        ``(engine_id, {'queue': [...], 'pending': ...})`` for each target."""),
    _C("set_properties", (PROPERTIES,), doc="""
        Update each target's properties (a dict of plain data)."""),
    _C("get_properties", (KEYS,), doc="""
        The properties (all, or ``keys``) of each target, one dict each."""),
    _C("del_properties", (KEYS,), doc="""
        Delete properties on each target."""),
    _C("has_properties", (KEYS,), doc="""
        Whether each target has the properties ``keys``."""),
    _C("clear_properties", doc="""
        Delete every property of each target."""),
    # data split and joined by the client (each layer writes these out)
    _C("scatter", (KEY, PARTS, FLAG), direct=False, wire_names=("key", "parts", "flatten")),
    _C("gather", (KEY,), VALUE, wire_names=("key",)),
    _C("raw_map", (OBJECT, PARTS), VALUE, direct=False, wire_names=("func", "parts")),
    # not applied to targets
    _C("get_ids", (), IDS, targets=False, block=False),
    _C("get_pending_deferred", (DEFERRED_ID,), VALUE, targets=False, direct=False),
    _C("clear_pending_deferreds", targets=False, block=False, direct=False),
    _C("abort", (DEFERRED_ID,), targets=False, block=False, direct=False),
)

#: name -> MultiEngineCall
BY_NAME = {call.name: call for call in MULTIENGINE_CALLS}
