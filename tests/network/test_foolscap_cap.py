"""Tier 2: with a payload cap a value over it is refused on its Foolscap
token header (issue 13: the cap bounded neither lanes nor Foolscap)."""
import pytest
import pytest_twisted

from ipkernel import wire
from ipkernel.error import PayloadTooLarge

from awaiting import raises, within

pytestmark = pytest.mark.tier2

CAP = 100_000


@pytest.fixture
def serialized_limit():
    wire.set_serialized_limit(CAP)
    yield
    wire.set_serialized_limit(None)


def test_the_limit_is_the_cap_and_the_overhead():
    schema = wire._SCHEMA
    try:
        wire.set_serialized_limit(10)
        accept, constraint = schema.getAttrConstraint("p")
        assert accept and constraint.maxLength == 10 + wire.SERIALIZED_OVERHEAD
        assert schema.getAttrConstraint("other") == (True, None)
    finally:
        wire.set_serialized_limit(None)
    assert schema.getAttrConstraint("p") == (True, None)


@pytest_twisted.ensureDeferred
async def test_a_value_over_the_cap_is_refused_through_foolscap(make_fc_cluster,
                                                               serialized_limit):
    cluster = await make_fc_cluster(2, payload_cap=CAP, data_channel=False, lane=False)  # all on Foolscap
    client = cluster.client
    err = await raises(PayloadTooLarge, client.push({"a": b"x" * 2_000_000}))
    assert str(err) == (
        "an argument of push was refused by the controller as too large: a value of 2000040 "
        f"bytes serialized is over its payload cap of {CAP} bytes; send it in smaller pieces "
        "(scatter, several pushes) or start the controller with a larger --payload-cap")
    # the connection is fine, and so is a value under the cap
    assert await within(client.push({"b": b"y" * 50_000})) == [None, None]
    assert [len(v) for v in await within(client.pull("b"))] == [50_000, 50_000]
    err = await raises(PayloadTooLarge, client.apply(len, (b"z" * 500_000,)))
