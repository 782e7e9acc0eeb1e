"""The multi-engine table and the layers built from it agree with the contracts."""
import inspect

import pytest

from ipkernel.client.blocking import MultiEngineClient
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


@pytest.mark.parametrize("call", CALLS, ids=lambda c: c.name)
def test_the_wire_arguments_are_the_remote_interface_s(call):
    method = RIMultiEngine[call.name]
    wire_names = list(method.argumentNames)
    extra = (["targets"] if call.targets else []) + (["block"] if call.block else [])
    assert wire_names[len(call.args):] == extra
    assert len(wire_names) == len(call.args) + len(extra)
    for name, kind in zip(wire_names, call.args):
        assert method.argConstraints[name] is CONSTRAINT[kind], (call.name, name)
    if call.targets:
        assert method.argConstraints["targets"] is remote.Targets
    if call.block:
        assert method.argConstraints["block"] is remote.Block


@pytest.mark.parametrize("call", [c for c in CALLS if c.name not in RENAMED and c.targets],
                         ids=lambda c: c.name)
def test_the_wire_names_are_the_interface_s(call):
    info = IFullSynchronousMultiEngine[call.name].getSignatureInfo()
    wanted = [n for n in info["positional"] if n != "targets"]
    assert list(RIMultiEngine[call.name].argumentNames)[:len(call.args)] == wanted


def test_renamed_arguments_are_the_remote_interface_s():
    for name, wire_names in RENAMED.items():
        call = multienginewire.BY_NAME[name]
        assert list(RIMultiEngine[name].argumentNames)[:len(call.args)] == wire_names


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
    assert list(params)[-3:] == ["targets", "block", "timeout"]
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
