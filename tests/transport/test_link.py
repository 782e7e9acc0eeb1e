"""The Link and its CarrierPolicy: which carrier takes a call.

Tier 1 with fakes for the lane, the data peer and the RemoteReference;
tier 2 in an in-process cluster: a small call goes by lane, a large push by
the data channel, a call with the lane down by Foolscap, each value
serialized once.
"""
import pytest
import pytest_twisted
from twisted.internet import defer

from ipkernel import serialize
from ipkernel.datachannel import refs
from ipkernel.lane import LaneProtocol
from ipkernel.lane.protocol import FrameTooLarge
from ipkernel.transport.link import (DATA_CHANNEL, DEFAULT_POLICY, FOOLSCAP, LANE,
                                     CarrierPolicy, Link)

from awaiting import within


class FakeRef:
    def __init__(self):
        self.calls = []

    def callRemote(self, method, *args, **kwargs):
        self.calls.append(method)
        return defer.succeed(("foolscap", method))

    def getPeer(self):
        return "peer"


class FakeLane:
    def __init__(self, joined=True, too_large=False):
        self.joined = joined
        self.too_large = too_large
        self.calls = []
        self.closed = False

    def callRemote(self, method, *args, **kwargs):
        self.calls.append(method)
        if self.too_large:
            return defer.fail(FrameTooLarge("too large"))
        return defer.succeed(("lane", method))

    def close(self):
        self.closed = True
        self.joined = False


class FakeData:
    connected = True

    def __init__(self):
        self.fetched = []
        self.closed = False

    def fetch(self, blob_id, wait, ask=True):
        self.fetched.append((blob_id, ask))
        return defer.succeed(b"blob")

    def close(self):
        self.closed = True


def big(n=refs.THRESHOLD):
    return serialize.serialize(b"x" * n)


# -- tier 1: the policy ------------------------------------------------------------

def test_the_default_threshold_is_the_data_channel_s():
    assert DEFAULT_POLICY.bulk_threshold == refs.THRESHOLD
    assert DEFAULT_POLICY.lane_limit == refs.THRESHOLD
    assert CarrierPolicy(1000).lane_limit == 1000
    assert CarrierPolicy(1000, lane_limit=10).lane_limit == 10


@pytest.mark.parametrize("bad", [0, -1, 1.5, True, "big"])
def test_a_bad_threshold_is_refused_by_name(bad):
    with pytest.raises(ValueError, match="bulk_threshold must be a positive number of bytes"):
        CarrierPolicy(bad)


def test_bulk_goes_on_the_data_channel_only_when_large_and_joined():
    policy = CarrierPolicy(1000)
    data = FakeData()
    assert policy.sends_bulk(data, {"a": big(1000)})
    assert not policy.sends_bulk(data, {"a": big(10)})
    assert not policy.sends_bulk(None, {"a": big(1000)})
    data.connected = False
    assert not policy.sends_bulk(data, [big(1000)])


def test_the_lane_takes_a_call_when_joined_and_not_foolscap_only():
    policy = CarrierPolicy()
    link = Link(FakeRef(), lane=FakeLane(), foolscap_only=("open_session",))
    assert policy.carrier(link, "push") == LANE
    assert policy.carrier(link, "open_session") == FOOLSCAP
    link.lane.joined = False
    assert policy.carrier(link, "push") == FOOLSCAP
    assert policy.carrier(Link(FakeRef()), "push") == FOOLSCAP


def test_answers_bulk_data_comes_on_the_data_channel_when_it_is_up():
    data = FakeData()
    assert DEFAULT_POLICY.fetch_carrier(data) == DATA_CHANNEL
    data.connected = False
    assert DEFAULT_POLICY.fetch_carrier(data) == FOOLSCAP
    assert DEFAULT_POLICY.fetch_carrier(None) == FOOLSCAP


# -- tier 1: the link follows its policy --------------------------------------------

class Recording(CarrierPolicy):
    """A policy that says FOOLSCAP or LANE as told, and records what it was asked."""

    def __init__(self, answer):
        super().__init__()
        self.answer = answer
        self.asked = []

    def carrier(self, link, method):
        self.asked.append(method)
        return self.answer


def test_the_link_asks_its_policy_once_per_call():
    ref, lane = FakeRef(), FakeLane()
    policy = Recording(FOOLSCAP)
    link = Link(ref, lane=lane, policy=policy)
    assert link.callRemote("push", 1).result == ("foolscap", "push")
    policy.answer = LANE
    assert link.callRemote("pull", 2).result == ("lane", "pull")
    assert policy.asked == ["push", "pull"]
    assert ref.calls == ["push"] and lane.calls == ["pull"]


def test_a_call_the_lane_refuses_as_too_large_goes_through_foolscap():
    ref, lane = FakeRef(), FakeLane(too_large=True)
    link = Link(ref, lane=lane)
    assert link.callRemote("push", 1).result == ("foolscap", "push")
    assert lane.calls == ["push"] and ref.calls == ["push"]


def test_offloaded_leaves_a_value_with_nothing_large_alone():
    link = Link(FakeRef(), data=FakeData(), policy=CarrierPolicy(1000))
    value = {"a": big(10)}
    assert link.offloaded(value, "all").result is value
    assert Link(FakeRef()).offloaded(value, [0]).result is value


def test_fetch_says_when_foolscap_must_bring_the_blob():
    link = Link(FakeRef())
    assert link.fetch(b"1" * 16) is None
    link.data = FakeData()
    assert link.fetch(b"1" * 16, pushed=True).result == b"blob"
    assert link.data.fetched == [(b"1" * 16, False)]


def test_close_closes_the_lane_and_the_data_channel_and_the_rest_is_the_reference_s():
    lane, data = FakeLane(), FakeData()
    link = Link(FakeRef(), lane=lane, data=data)
    assert link.getPeer() == "peer"
    link.close()
    assert lane.closed and data.closed and link.lane is None and link.data is None
    assert link.carrier("push") == FOOLSCAP


# -- tier 2: in an in-process cluster -------------------------------------------------

@pytest.fixture
def carried(monkeypatch):
    """``{"lane": [methods], "serialized": [values]}``: what went on a client
    or engine lane, and every value serialized, in this test."""
    seen = {"lane": [], "serialized": []}
    original_call = LaneProtocol.callRemote
    original_serialize = serialize.serialize

    def on_lane(self, method, *args, **kwargs):
        seen["lane"].append((self, method))
        return original_call(self, method, *args, **kwargs)

    def serializing(value, *args, **kwargs):
        seen["serialized"].append(value)
        return original_serialize(value, *args, **kwargs)
    monkeypatch.setattr(LaneProtocol, "callRemote", on_lane)
    monkeypatch.setattr(serialize, "serialize", serializing)
    return seen


def foolscap_calls(monkeypatch, link):
    methods = []
    original = link.rref.callRemote

    def recording(method, *args, **kwargs):
        methods.append(method)
        return original(method, *args, **kwargs)
    monkeypatch.setattr(link.rref, "callRemote", recording)
    return methods


def on_lane(seen, lane):
    """The methods called on ``lane``."""
    return [method for which, method in seen["lane"] if which is lane]


def times_serialized(seen, value):
    return sum(1 for v in seen["serialized"] if v is value)


@pytest.mark.tier2
@pytest_twisted.ensureDeferred
async def test_a_small_call_goes_by_lane(make_fc_cluster, carried, monkeypatch):
    cluster = await make_fc_cluster(1)
    link = cluster.client.link
    assert isinstance(link, Link) and link.lane_joined
    through_foolscap = foolscap_calls(monkeypatch, link)
    value = [1, 2, 3]
    await within(cluster.client.push({"small": value}, targets=0))
    assert on_lane(carried, link.lane) == ["push"] and "push" not in through_foolscap
    assert times_serialized(carried, value) == 1
    assert cluster.client.data.bytes_sent == 0
    assert await within(cluster.client.pull("small", targets=0)) == [value]


@pytest.mark.tier2
@pytest_twisted.ensureDeferred
async def test_a_large_push_goes_by_the_data_channel(make_fc_cluster, carried, monkeypatch):
    cluster = await make_fc_cluster(1)
    link = cluster.client.link
    through_foolscap = foolscap_calls(monkeypatch, link)
    value = b"y" * (4 * refs.THRESHOLD)
    await within(cluster.client.push({"large": value}, targets=0))
    assert link.data.bytes_sent >= len(value)   # the bytes, on the data channel
    assert on_lane(carried, link.lane) == ["push"]  # the reference
    assert "push" not in through_foolscap
    assert times_serialized(carried, value) == 1
    assert await within(cluster.client.pull("large", targets=0)) == [value]


@pytest.mark.tier2
@pytest_twisted.ensureDeferred
async def test_with_the_lane_down_a_call_goes_through_foolscap(make_fc_cluster, carried,
                                                               monkeypatch):
    cluster = await make_fc_cluster(1)
    link = cluster.client.link
    lane = link.lane
    link.close_lane()
    assert link.carrier("push") == FOOLSCAP
    through_foolscap = foolscap_calls(monkeypatch, link)
    value = {"k": 7}
    await within(cluster.client.push({"d": value}, targets=0))
    assert "push" in through_foolscap
    assert on_lane(carried, lane) == []
    assert times_serialized(carried, value) == 1
    assert await within(cluster.client.pull("d", targets=0)) == [value]
