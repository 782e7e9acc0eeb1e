"""The engine-call table and the layers built from it agree with the contracts."""
import inspect

import pytest

from ipkernel.controller.fc import RemoteEngine
from ipkernel.engine.fc import FCEngineFromService
from ipkernel.engine.queued import QueuedEngine
from ipkernel.interfaces import enginewire, remote
from ipkernel.interfaces.engine import IEngineBase
from ipkernel.interfaces.remote import RIEngine

#: RIEngine methods that are the link's own, not engine methods.
CONTROL = {"get_id", "set_id", "ping", "pulse", "stats", "controller_stopping"}
CALLS = enginewire.ENGINE_CALLS


def test_the_table_has_every_engine_method_once():
    names = [call.name for call in CALLS]
    assert len(names) == len(set(names))
    assert set(names) == set(IEngineBase.names(all=True)) - {"id", "properties"}
    assert set(names) == set(RIEngine.names()) - CONTROL


#: RIEngine v1, as it travels: each row's arguments and constraints (the
#: constraint's name in ipkernel.interfaces.remote).  The entries are made from
#: the table and IEngineBase, so renaming an argument of either would change
#: the wire: this says it has not.
WIRE = {
    "execute": "lines=Code",
    "push": "namespace=Payload",
    "pull": "keys=Keys",
    "push_function": "namespace=Payload",
    "pull_function": "keys=Keys",
    "apply": "func=Payload, args=Payload, kwargs=Payload",
    "apply_batch": "shared=?, refs=PackedBytes, args=PackedBytes",
    "starmap": "func=Payload, argtuples=Payload",
    "complete": "text=Code, line=OptionalLine",
    "get_result": "i=CommandNumber",
    "reset": "",
    "kill": "",
    "keys": "",
    "interrupt": "",
    "push_serialized": "namespace=Payload",
    "pull_serialized": "keys=Keys",
    "set_properties": "properties=Properties",
    "get_properties": "keys=OptionalKeys",
    "del_properties": "keys=Keys",
    "has_properties": "keys=Keys",
    "clear_properties": "",
}
#: Rows whose entry is written out in RIEngine (not made from the row).
WRITTEN = {"apply_batch"}
#: The wire constraint of each argument kind.
CONSTRAINT = {
    enginewire.CODE: remote.Code, enginewire.NAMESPACE: remote.Payload,
    enginewire.FUNCTIONS: remote.Payload, enginewire.SERIALIZED: remote.Payload,
    enginewire.OBJECT: remote.Payload, enginewire.KEYS: remote.Keys,
    enginewire.LINE: remote.OptionalLine, enginewire.NUMBER: remote.CommandNumber,
    enginewire.PROPERTIES: remote.Properties,
}


def test_the_wire_is_v1():
    assert RIEngine.__remote_name__ == "RIEngine.v1.ipkernel"
    assert set(WIRE) == set(RIEngine.names()) - CONTROL
    for name, signature in WIRE.items():
        method = RIEngine[name]
        pairs = [part.split("=") for part in signature.split(", ")] if signature else []
        assert method.argumentNames == [arg for arg, _ in pairs], name
        for arg, constraint in pairs:
            if constraint != "?":  # written out, unnamed
                assert method.argConstraints[arg] is getattr(remote, constraint), (name, arg)
        assert method.required == method.argumentNames, name  # nothing Optional
        assert method.responseConstraint is remote.Outcome, name


def test_every_row_has_an_entry_made_from_it_but_the_written_ones():
    made = {n for n in RIEngine.names()
            if getattr(RIEngine[n], "constraint_names", None) is not None}
    assert made == {c.name for c in CALLS} - WRITTEN
    assert made.isdisjoint(CONTROL)
    assert all(RIEngine[n].interface is RIEngine for n in RIEngine.names())


@pytest.mark.parametrize("call", CALLS, ids=lambda c: c.name)
def test_the_wire_arguments_are_the_row_s_and_the_interface_s(call):
    method = RIEngine[call.name]
    wire_names = method.argumentNames
    assert all(kind in CONSTRAINT for kind in call.args)
    if call.result == enginewire.BATCH:  # its calls packed into three buffers (batchwire)
        assert wire_names == ["shared", "refs", "args"]
        return
    info = IEngineBase[call.name].getSignatureInfo()
    assert wire_names == list(info["positional"])
    for name, kind in zip(wire_names, call.args):
        wanted = CONSTRAINT[kind]
        if kind == enginewire.KEYS and name in info["optional"]:
            wanted = remote.OptionalKeys
        assert method.argConstraints[name] is wanted, (call.name, name)
    assert method.required == wire_names
    assert method.responseConstraint is remote.Outcome


@pytest.mark.parametrize("call", [c for c in CALLS if c.name not in WRITTEN],
                         ids=lambda c: c.name)
def test_a_made_entry_says_what_it_is(call):
    method = RIEngine[call.name]
    doc = vars(method)["__doc__"]
    declared = IEngineBase[call.name].interface
    assert f"<{declared.__module__}.{declared.__name__}.{call.name}>" in doc
    assert "ENGINE_CALLS" in doc
    assert ("; queued" in doc) is call.queued
    for arg, name in zip(method.argumentNames, method.constraint_names):
        assert getattr(remote, name) is method.argConstraints[arg]


@pytest.mark.parametrize("call", CALLS, ids=lambda c: c.name)
def test_every_layer_has_the_method(call):
    assert callable(getattr(FCEngineFromService, f"remote_{call.name}"))
    proxy = getattr(RemoteEngine, call.name)
    # the proxy takes what the interface says (names and defaults)
    wanted = IEngineBase[call.name].getSignatureInfo()
    params = list(inspect.signature(proxy).parameters)[1:]
    assert params == list(wanted["positional"])
    assert callable(getattr(QueuedEngine, call.name))


def test_the_queue_takes_the_queued_ones_and_answers_the_others_itself():
    from ipkernel.engine import queued
    assert set(queued._QUEUED_METHODS) == {c.name for c in CALLS if c.queued}
    for call in CALLS:
        if not call.queued:  # written out in QueuedEngine, not made from the list
            assert call.name in vars(QueuedEngine)
