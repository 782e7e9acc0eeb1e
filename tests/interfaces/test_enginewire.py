"""The engine-call table and the layers built from it agree with the contracts."""
import inspect

import pytest

from ipkernel.controller.fc import RemoteEngine
from ipkernel.engine.fc import FCEngineFromService
from ipkernel.engine.queued import QueuedEngine
from ipkernel.interfaces import enginewire
from ipkernel.interfaces.engine import IEngineBase
from ipkernel.interfaces.remote import RIEngine

#: RIEngine methods that are the link's own, not engine methods.
CONTROL = {"get_id", "set_id", "ping", "pulse", "controller_stopping"}
CALLS = enginewire.ENGINE_CALLS


def test_the_table_has_every_engine_method_once():
    names = [call.name for call in CALLS]
    assert len(names) == len(set(names))
    assert set(names) == set(IEngineBase.names(all=True)) - {"id", "properties"}
    assert set(names) == set(RIEngine.names()) - CONTROL


@pytest.mark.parametrize("call", CALLS, ids=lambda c: c.name)
def test_the_wire_arguments_are_the_remote_interface_s(call):
    wire_names = RIEngine[call.name].argumentNames
    if call.result == enginewire.BATCH:  # its calls packed into three buffers (batchwire)
        assert wire_names == ["shared", "refs", "args"]
    else:
        assert len(call.args) == len(wire_names)
    assert all(kind in vars(enginewire).values() for kind in call.args)


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
