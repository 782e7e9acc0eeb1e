"""The multi-engine table and the layers built from it agree with the contracts."""
import inspect

import pytest

from ipkernel.client.blocking import STREAMED, MultiEngineClient
from ipkernel.client.direct import DIRECT_METHODS
from ipkernel.client.fcmultiengine import FCFullSynchronousMultiEngineClient
from ipkernel.controller.fc import FCSynchronousMultiEngine
from ipkernel.interfaces import enginewire, multienginewire, remote
from ipkernel.interfaces.multiengine import (IEngineMultiplexer, IFullSynchronousMultiEngine,
                                             ISynchronousMultiEngine)
from ipkernel.interfaces.remote import RIMultiEngine

CALLS = multienginewire.MULTIENGINE_CALLS
#: RIMultiEngine methods that are the connection's own, not multi-engine methods.
CONTROL = {"get_client_name", "open_session", "fetch_blob", "open_data_channel", "open_lane"}
#: IFullSynchronousMultiEngine methods made on the client from others (no wire method).
CLIENT_ONLY = {"map", "map_partitions", "zip_pull", "run"}
#: The wire constraint of each argument kind.
CONSTRAINT = {
    multienginewire.CODE: remote.Code, multienginewire.NAMESPACE: remote.Payload,
    multienginewire.FUNCTIONS: remote.Payload, multienginewire.SERIALIZED: remote.Payload,
    multienginewire.OBJECT: remote.Payload, multienginewire.KEYS: remote.Keys,
    multienginewire.LINE: remote.OptionalLine, multienginewire.NUMBER: remote.CommandNumber,
    multienginewire.PROPERTIES: remote.Properties, multienginewire.FLAG: remote.Block,
    multienginewire.KEY: remote.Key, multienginewire.PARTS: remote.Payload,
    multienginewire.DEFERRED_ID: remote.DeferredId,
}
#: Arguments whose interface name is not the wire's: the client splits the data.
RENAMED = {"scatter": ["key", "parts", "flatten"], "gather": ["key"], "raw_map": ["func", "parts"]}


def test_the_table_has_every_wire_method_once():
    names = [call.name for call in CALLS]
    assert len(names) == len(set(names))
    assert set(names) == set(RIMultiEngine.names()) - CONTROL
    assert set(names) <= set(IFullSynchronousMultiEngine.names(all=True))
    assert set(IFullSynchronousMultiEngine.names(all=True)) - set(names) == CLIENT_ONLY


def test_every_engine_method_applied_to_targets_has_a_row():
    multiplexed = {call.name for call in CALLS if call.multiplexed}
    assert set(IEngineMultiplexer.names()) <= multiplexed
    assert set(ISynchronousMultiEngine.names()) - {"get_ids"} <= {c.name for c in CALLS}


#: RIMultiEngine v1, as it travels: each row's arguments and constraints (the
#: constraint's name in ipkernel.interfaces.remote).  The entries are made from
#: the table and the zope interface, so renaming an argument of either would
#: change the wire: this says it has not.
WIRE = {
    "execute": "lines=Code, targets=Targets, block=Block",
    "push": "namespace=Payload, targets=Targets, block=Block",
    "pull": "keys=Keys, targets=Targets, block=Block",
    "push_function": "namespace=Payload, targets=Targets, block=Block",
    "pull_function": "keys=Keys, targets=Targets, block=Block",
    "apply": "func=Payload, args=Payload, kwargs=Payload, targets=Targets, block=Block",
    "complete": "text=Code, line=OptionalLine, targets=Targets, block=Block",
    "get_result": "i=CommandNumber, targets=Targets, block=Block",
    "reset": "targets=Targets, block=Block",
    "keys": "targets=Targets, block=Block",
    "kill": "controller=Block, targets=Targets, block=Block",
    "interrupt": "targets=Targets, block=Block",
    "push_serialized": "namespace=Payload, targets=Targets, block=Block",
    "pull_serialized": "keys=Keys, targets=Targets, block=Block",
    "clear_queue": "targets=Targets, block=Block",
    "queue_status": "targets=Targets, block=Block",
    "set_properties": "properties=Properties, targets=Targets, block=Block",
    "get_properties": "keys=OptionalKeys, targets=Targets, block=Block",
    "del_properties": "keys=Keys, targets=Targets, block=Block",
    "has_properties": "keys=Keys, targets=Targets, block=Block",
    "clear_properties": "targets=Targets, block=Block",
    "scatter": "key=Key, parts=Payload, flatten=Block, targets=Targets, block=Block",
    "gather": "key=Key, targets=Targets, block=Block",
    "raw_map": "func=Payload, parts=Payload, targets=Targets, block=Block",
    "get_ids": "",
    "get_pending_deferred": "deferred_id=DeferredId, block=Block",
    "clear_pending_deferreds": "",
    "abort": "deferred_id=DeferredId",
}
#: Rows whose entry is written out in RIMultiEngine (not made from the row).
WRITTEN = {"get_ids"}


def _interface_names(call):
    info = IFullSynchronousMultiEngine[call.name].getSignatureInfo()
    return [n for n in info["positional"] if n not in ("targets", "block")]


def test_the_wire_is_v1():
    assert RIMultiEngine.__remote_name__ == "RIMultiEngine.v1.ipkernel"
    assert set(WIRE) == set(RIMultiEngine.names()) - CONTROL
    for name, signature in WIRE.items():
        method = RIMultiEngine[name]
        pairs = [part.split("=") for part in signature.split(", ")] if signature else []
        assert method.argumentNames == [arg for arg, _ in pairs], name
        for arg, constraint in pairs:
            assert method.argConstraints[arg] is getattr(remote, constraint), (name, arg)
        assert method.required == method.argumentNames, name  # nothing Optional
        if name not in WRITTEN:
            assert method.responseConstraint is remote.Outcome, name


def test_every_row_has_an_entry_made_from_it_but_the_written_ones():
    made = {n for n in RIMultiEngine.names()
            if getattr(RIMultiEngine[n], "constraint_names", None) is not None}
    assert made == {c.name for c in CALLS} - WRITTEN
    assert made.isdisjoint(CONTROL)
    assert all(RIMultiEngine[n].interface is RIMultiEngine for n in RIMultiEngine.names())


@pytest.mark.parametrize("call", CALLS, ids=lambda c: c.name)
def test_the_wire_arguments_are_the_row_s(call):
    method = RIMultiEngine[call.name]
    wire_names = list(method.argumentNames)
    extra = (["targets"] if call.targets else []) + (["block"] if call.block else [])
    assert wire_names == list(call.wire_names or _interface_names(call)) + extra
    optional = IFullSynchronousMultiEngine[call.name].getSignatureInfo()["optional"]
    for name, kind in zip(wire_names, call.args):
        wanted = CONSTRAINT[kind]
        if kind == multienginewire.KEYS and name in optional:
            wanted = remote.OptionalKeys
        assert method.argConstraints[name] is wanted, (call.name, name)
    if call.targets:
        assert method.argConstraints["targets"] is remote.Targets
    if call.block:
        assert method.argConstraints["block"] is remote.Block
    assert method.required == wire_names
    if call.name not in WRITTEN:
        assert method.responseConstraint is remote.Outcome


@pytest.mark.parametrize("call", [c for c in CALLS if c.name not in RENAMED],
                         ids=lambda c: c.name)
def test_the_wire_names_are_the_interface_s(call):
    assert call.wire_names == ()
    assert list(RIMultiEngine[call.name].argumentNames)[:len(call.args)] == \
        _interface_names(call)


def test_renamed_arguments_are_the_row_s_and_the_remote_interface_s():
    assert {c.name for c in CALLS if c.wire_names} == set(RENAMED)
    for name, wire_names in RENAMED.items():
        call = multienginewire.BY_NAME[name]
        assert list(call.wire_names) == wire_names
        assert wire_names != _interface_names(call)  # else the row needs no wire_names
        assert list(RIMultiEngine[name].argumentNames)[:len(call.args)] == wire_names


@pytest.mark.parametrize("call", [c for c in CALLS if c.name not in WRITTEN],
                         ids=lambda c: c.name)
def test_a_made_entry_says_what_it_is(call):
    method = RIMultiEngine[call.name]
    doc = vars(method)["__doc__"]
    if call.doc:
        assert doc.startswith(inspect.cleandoc(call.doc))
    declared = IFullSynchronousMultiEngine[call.name].interface
    assert f"<{declared.__module__}.{declared.__name__}.{call.name}>" in doc
    assert "MULTIENGINE_CALLS" in doc
    assert len(method.constraint_names) == len(method.argumentNames)
    for arg, name in zip(method.argumentNames, method.constraint_names):
        assert getattr(remote, name) is method.argConstraints[arg]


def test_a_new_row_needs_no_written_entry():
    row = multienginewire.MultiEngineCall("zip_pull", (multienginewire.KEYS,),
                                          multienginewire.VALUE, doc="Pull, transposed.")

    class RIMadeForTheTest(remote.RemoteInterface,
                           metaclass=remote._made_from((row,), remote._multiengine_entry)):
        __remote_name__ = f"RIMadeForTheTest.{id(row)}.ipkernel-tests"

        def ping():
            return int

    assert list(RIMadeForTheTest.names()) == ["ping", "zip_pull"]
    method = RIMadeForTheTest["zip_pull"]
    assert method.argumentNames == ["keys", "targets", "block"]
    assert method.argConstraints["keys"] is remote.Keys
    assert method.responseConstraint is remote.Outcome
    assert vars(method)["__doc__"].startswith("Pull, transposed.")


def test_a_row_that_does_not_fit_the_interface_is_refused():
    wrong = multienginewire.MultiEngineCall("execute", (multienginewire.CODE,) * 2)
    with pytest.raises(TypeError, match="execute: the row has 2 arguments"):
        remote._multiengine_entry(wrong)
    reserved = multienginewire.MultiEngineCall("gather", (multienginewire.KEY,),
                                               wire_names=("method",))
    with pytest.raises(TypeError, match="cannot be named method"):
        remote._multiengine_entry(reserved)


def test_kinds_and_results_are_known():
    kinds = set(CONSTRAINT)
    results = {enginewire.PLAIN, enginewire.VALUE, enginewire.SERIALIZED_VALUES,
               multienginewire.COMMAND_RESULTS, multienginewire.QUEUE_STATUS,
               multienginewire.IDS}
    for call in CALLS:
        assert set(call.args) <= kinds, call.name
        assert call.result in results, call.name


@pytest.mark.parametrize("call", CALLS, ids=lambda c: c.name)
def test_the_controller_has_the_method(call):
    assert callable(getattr(FCSynchronousMultiEngine, f"remote_{call.name}"))


def test_the_controller_has_no_method_without_a_row():
    own = {n[len("remote_"):] for n in dir(FCSynchronousMultiEngine) if n.startswith("remote_")}
    assert own - CONTROL == {c.name for c in CALLS}


@pytest.mark.parametrize("call", CALLS, ids=lambda c: c.name)
def test_the_async_client_has_the_method_with_the_interface_s_arguments(call):
    method = getattr(FCFullSynchronousMultiEngineClient, call.name)
    wanted = IFullSynchronousMultiEngine[call.name].getSignatureInfo()
    params = inspect.signature(method).parameters
    positional = [n for n, p in params.items()
                  if p.kind is inspect.Parameter.POSITIONAL_OR_KEYWORD][1:]
    assert positional == list(wanted["positional"])
    if call.multiplexed:
        assert params["block"].kind is inspect.Parameter.KEYWORD_ONLY
    if hasattr(inspect.unwrap(method), "__signature__"):  # made from the row
        assert method.__doc__


def test_the_async_client_has_no_wire_method_without_a_row():
    public = {n for n in vars(FCFullSynchronousMultiEngineClient) if not n.startswith("_")}
    interface = set(IFullSynchronousMultiEngine.names(all=True))
    assert (public & interface) - CLIENT_ONLY <= {c.name for c in CALLS}


@pytest.mark.parametrize("call", [c for c in CALLS if c.multiplexed], ids=lambda c: c.name)
def test_the_blocking_client_has_the_method(call):
    method = getattr(MultiEngineClient, call.name)
    params = inspect.signature(method).parameters
    streamed = ["stream"] if call.name in STREAMED else []   # calls that run user code
    assert list(params)[-3 - len(streamed):] == ["targets", "block", "timeout"] + streamed
    assert params["targets"].default is None and params["block"].default is None
    assert params["timeout"].kind is inspect.Parameter.KEYWORD_ONLY
    doc = inspect.getdoc(method)
    assert doc and "fire" not in doc  # a user's docstring, not the Deferred contract's


def test_the_blocking_client_has_no_wire_method_without_a_row():
    public = {n for n in dir(MultiEngineClient) if not n.startswith("_")}
    interface = set(IFullSynchronousMultiEngine.names(all=True))
    assert (public & interface) - CLIENT_ONLY <= {c.name for c in CALLS}
    made = {n for n, v in vars(MultiEngineClient).items()
            if getattr(v, "__signature__", None) is not None}
    assert made and made <= {c.name for c in CALLS if c.multiplexed}


def test_the_direct_methods_are_the_table_s():
    assert DIRECT_METHODS == {c.name for c in CALLS if c.direct} | {"zip_pull"}
    assert not {"kill", "interrupt", "abort", "get_pending_deferred"} & DIRECT_METHODS


class FakeSynchronousMultiEngine:
    """Records what the controller's generated methods hand on."""

    on_discard = None

    def __init__(self):
        self.calls = []

    def __getattr__(self, name):
        def method(*args, **kwargs):
            self.calls.append((name, args, kwargs))
            return [f"{name} done"]
        return method


def test_a_generated_controller_method_reads_the_wire_arguments_named_or_not():
    sme = FakeSynchronousMultiEngine()
    view = FCSynchronousMultiEngine(sme)
    positional = view.remote_pull(("list", ["a", "b"]), ("one", [3]), True)
    named = view.remote_complete(text="im", line=["import"], targets=("all", []), block=False)
    assert positional.result == ["pull done"] and named.result == ["complete done"]
    assert sme.calls == [("pull", (["a", "b"],), {"targets": 3, "block": True}),
                         ("complete", ("im", "import"), {"targets": "all", "block": False})]
    with pytest.raises(TypeError):
        view.remote_pull(("one", ["a"]), ("all", []))  # block missing


def test_a_generated_controller_method_caps_the_user_data_it_carries():
    from ipkernel import serialize, wire

    sme = FakeSynchronousMultiEngine()
    view = FCSynchronousMultiEngine(sme, payload_cap=100)
    outcome = view.remote_push({"a": serialize.serialize(b"z" * 1000)}, ("all", []), True).result
    assert isinstance(outcome, wire.ErrorRecord) and "payload cap of 100 bytes" in str(
        wire.exception_from_record(outcome))
    assert sme.calls == []
