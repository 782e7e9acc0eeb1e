"""Tier 2: the engine's lane handlers (``FCEngineFromService.lane_handler``).

Calls that run in the user thread and arrive on a lane are queued without
Deferreds; these tests check, on a real lane on 127.0.0.1, that such calls
are taken by the handler and answer exactly as ``remote_<method>`` does
(results, errors with their labels), and that the calls a handler must not
take (named arguments, bulk references, reactor-thread methods) go the
usual way.  The full engine suite also runs over lanes ("lane" modes in
test_engineservice.py).
"""
import pytest
import pytest_twisted
from foolscap.api import Referenceable

from ipkernel.datachannel.refs import REF_KEY
from ipkernel.engine.fc import FCEngineFromService
from ipkernel.interfaces.remote import RIEngine
from ipkernel.serialize import Serialized, serialize, unserialize
from ipkernel.wire import ErrorRecord

from awaiting import within
from lanehelpers import started_lanes

pytestmark = pytest.mark.tier2


@pytest_twisted.async_yield_fixture
async def engine_lane(make_engine):
    """``(client lane, served lane, service)``: an EngineService behind a lane."""
    async for lanes in started_lanes():
        service = make_engine()
        service.id = 5
        client, served = await lanes.join(FCEngineFromService(service),
                                          remote_interface=RIEngine)
        yield client, served, service


@pytest_twisted.ensureDeferred
async def test_execute_is_taken_by_the_handler_and_answers_as_remote_execute(engine_lane):
    client, served, service = engine_lane
    result = await within(client.callRemote("execute", "x = 6 * 7\nprint('hi')\nx"))
    assert served.handled_in == 1
    assert result["id"] == 5 and result["stdout"] == "hi\n"
    assert result["display"]["repr"] == "42"
    assert service.shell.user_ns["x"] == 42


@pytest_twisted.ensureDeferred
async def test_a_failure_answers_with_the_labelled_error_record(engine_lane):
    client, served, _ = engine_lane
    record = await within(client.callRemote("execute", "1/0"))
    assert served.handled_in == 1
    assert isinstance(record, ErrorRecord) and record.ename == "ZeroDivisionError"
    assert record.engine_info == {"engine_id": 5, "method": "execute"}
    assert "1/0" in record.traceback
    assert isinstance(unserialize(record.exception), ZeroDivisionError)


@pytest_twisted.ensureDeferred
async def test_values_come_back_serialized(engine_lane):
    client, served, _ = engine_lane
    await within(client.callRemote("execute", "v = [1, 2.5, 'three']"))
    pulled = await within(client.callRemote("pull", ("one", ["v"])))
    assert unserialize(pulled) == [1, 2.5, "three"]
    func = serialize(lambda a, b=1: a * b)
    out = await within(client.callRemote("apply", func, serialize((3,)), serialize({"b": 4})))
    assert unserialize(out) == 12
    assert served.handled_in == 3


@pytest_twisted.ensureDeferred
async def test_calls_not_for_the_user_thread_go_the_usual_way(engine_lane):
    client, served, service = engine_lane
    await within(client.callRemote("set_properties", {"k": 1}))
    assert await within(client.callRemote("get_properties", ("list", ["k"]))) == {"k": 1}
    await within(client.callRemote("execute", lines="y = 1"))   # named: remote_execute
    assert served.handled_in == 0 and served.calls_in == 3
    assert service.shell.user_ns["y"] == 1


def test_a_call_waiting_for_bulk_data_is_declined(make_engine):
    local = FCEngineFromService(make_engine())
    ref = Serialized([], "pickle", {REF_KEY: ["00" * 16, [10]]})
    answers = []
    assert local.lane_handler("push")(({"a": ref},), {}, answers.append) is False
    assert local.lane_handler("set_properties") is None
    assert answers == []


def test_an_engine_without_user_thread_functions_has_no_handlers(make_engine):
    class Other(Referenceable):
        pass
    local = FCEngineFromService.__new__(FCEngineFromService)
    local.service = Other()
    assert local.lane_handler("execute") is None


def test_the_user_thread_functions_are_what_the_engine_methods_run(make_engine, monkeypatch):
    from ipkernel.engine.service import USER_THREAD_METHODS
    from ipkernel.interfaces import IEngineBase
    service = make_engine()
    seen = {}

    def recording(method, func, *args):
        seen[method] = func
    monkeypatch.setattr(service, "_call", recording)
    for name in sorted(USER_THREAD_METHODS):
        arguments = [n for n in IEngineBase[name].positional if n != "self"]
        getattr(service, name)(*[None] * len(arguments))
        assert seen[name] == service.user_thread_function(name), name
    assert service.user_thread_function("set_properties") is None
