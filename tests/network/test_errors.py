"""Tier 2: errors crossing client -> controller -> engine Tubs and back."""
import io
import json

import pytest
import pytest_twisted
from foolscap.api import Violation
from foolscap.copyable import debug_CopyableFactories

from ipkernel import wire
from ipkernel.error import (ENGINE_INFO_ATTR, TRACEBACK_ATTR, InvalidEngineID,
                            PayloadTooLarge, RemoteError)

from awaiting import composite, within

pytestmark = pytest.mark.tier2


# Engine code raising exceptions that cannot travel as themselves.
UNPICKLABLE = """
import threading
class HoldsALock(Exception):
    def __init__(self, text):
        super().__init__(text)
        self.lock = threading.Lock()
def fail_deep():
    raise HoldsALock("lock marker " + str(id))
fail_deep()
"""

UNREBUILDABLE = """
class NeedsTwo(Exception):
    def __init__(self, first, second):
        super().__init__(f"{first}/{second}")
raise NeedsTwo("rebuild", "marker")
"""

ENGINE_ONLY_CLASS = """
class DefinedOnTheEngine(ValueError):
    pass
raise DefinedOnTheEngine("engine class marker")
"""


@pytest_twisted.ensureDeferred
async def test_unpicklable_exception_arrives_as_remote_error(make_fc_cluster):
    client = (await make_fc_cluster(2)).client
    err = await composite(client.execute(UNPICKLABLE))
    assert [type(e) for e in err.exceptions] == [RemoteError, RemoteError]
    for engine_id, exc in enumerate(err.exceptions):
        assert exc.ename == "HoldsALock"
        assert exc.evalue == f"lock marker {engine_id}"
        assert exc.engine_info == {"engine_id": engine_id, "method": "execute"}
        assert 'raise HoldsALock("lock marker " + str(id))' in exc.traceback
        assert "fail_deep" in exc.traceback
    assert str(err).splitlines()[1:] == [
        "[0:execute]: RemoteError: HoldsALock: lock marker 0",
        "[1:execute]: RemoteError: HoldsALock: lock marker 1",
    ]
    out = io.StringIO()
    err.print_tracebacks(file=out)
    printed = out.getvalue()
    assert "[0:execute]" in printed and "[1:execute]" in printed
    assert printed.count('raise HoldsALock("lock marker " + str(id))') == 2
    with pytest.raises(RemoteError):
        err.raise_exception(1)


@pytest_twisted.ensureDeferred
async def test_exception_that_cannot_be_rebuilt_arrives_as_remote_error(make_fc_cluster):
    client = (await make_fc_cluster(1)).client
    err = await composite(client.execute(UNREBUILDABLE))
    (exc,) = err.exceptions
    assert isinstance(exc, RemoteError)
    assert (exc.ename, exc.evalue) == ("NeedsTwo", "rebuild/marker")
    assert 'raise NeedsTwo("rebuild", "marker")' in exc.traceback


@pytest_twisted.ensureDeferred
async def test_exception_class_defined_on_the_engine_keeps_its_type(make_fc_cluster):
    client = (await make_fc_cluster(1)).client
    err = await composite(client.execute(ENGINE_ONLY_CLASS))
    (exc,) = err.exceptions
    assert type(exc).__name__ == "DefinedOnTheEngine"
    assert isinstance(exc, ValueError)
    assert getattr(exc, ENGINE_INFO_ATTR) == {"engine_id": 0, "method": "execute"}
    assert 'raise DefinedOnTheEngine("engine class marker")' in getattr(exc, TRACEBACK_ATTR)


@pytest_twisted.ensureDeferred
async def test_print_tracebacks_keeps_the_engine_traceback_text(make_fc_cluster):
    client = (await make_fc_cluster(2)).client
    await within(client.execute("def inner(k):\n    return 10 // k\n"))
    err = await composite(client.apply(lambda: inner(id - id)))  # noqa: F821
    assert [type(e) for e in err.exceptions] == [ZeroDivisionError] * 2
    one = io.StringIO()
    err.print_tracebacks(1, file=one)
    text = one.getvalue()
    assert text.startswith("[1:apply]")
    assert "return 10 // k" in text and "ZeroDivisionError" in text
    assert "[0:apply]" not in text


@pytest_twisted.ensureDeferred
async def test_non_blocking_errors_arrive_when_fetched(make_fc_cluster):
    client = (await make_fc_cluster(2)).client
    deferred_id = await within(client.execute(UNPICKLABLE, block=False))
    err = await composite(client.get_pending_deferred(deferred_id))
    assert [type(e) for e in err.exceptions] == [RemoteError, RemoteError]


@pytest_twisted.ensureDeferred
async def test_arguments_the_wire_refuses(make_fc_cluster):
    client = (await make_fc_cluster(2)).client
    with pytest.raises(TypeError, match="execute"):
        await within(client.execute(b"a = 1"))
    with pytest.raises(InvalidEngineID):
        await within(client.execute("a = 1", targets=2 ** 70))
    with pytest.raises(InvalidEngineID):
        await within(client.pull("a", targets=[0, -2 ** 80]))
    with pytest.raises(PayloadTooLarge, match="pull"):
        await within(client.pull("k" * 5000))
    with pytest.raises(TypeError, match="get_result"):
        await within(client.get_result("1"))
    with pytest.raises(TypeError):
        await within(client.set_properties({"f": object()}))
    with pytest.raises(TypeError):
        await within(client.complete("pri", line=5))
    # none of that reached an engine, and the connection is fine
    err = await composite(client.get_result())
    assert [type(e) for e in err.exceptions] == [IndexError, IndexError]
    assert await within(client.pull("id")) == [0, 1]



def test_json_values_cross_as_one_token_and_arrive_decoded():
    factory = debug_CopyableFactories[wire.JSON_TYPE][0]
    value = [{"number": 1, "input": {"raw": "a=1"}, "id": 0, "stdout": "x\n"}]
    assert factory({"j": json.dumps(value).encode()}) == value
    for bad in ({"j": b"{not json"}, {}):
        with pytest.raises(Violation):
            factory(bad)
