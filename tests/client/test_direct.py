"""Tier 2: blocking calls on the direct path (ipkernel.client.direct): made in
the calling thread on a lane of their own, handed back to the reactor
path when they cannot be done there."""
import threading

import pytest
import pytest_twisted
from twisted.internet import reactor

from ipkernel.client import MultiEngineClient
from ipkernel.client.direct import DirectCalls
from ipkernel.client.reactor import CallTimeout
from ipkernel.datachannel import refs
from ipkernel.error import CompositeError, InvalidEngineID

pytestmark = pytest.mark.tier2

numpy = pytest.importorskip("numpy")


class CountingHandOver:
    """``call_in_reactor`` that counts the calls handed to the reactor thread."""

    def __init__(self):
        self.count = 0

    def __call__(self, func, *args, **kwargs):
        self.count += 1
        reactor.callFromThread(func, *args, **kwargs)


def counted_client(cluster, harness):
    hand_over = CountingHandOver()
    mec = MultiEngineClient(cluster.mec_furl, tub=cluster.client_tub, timeout=10,
                            call_in_reactor=hand_over)
    harness.clients.append(mec)
    return mec, hand_over


def lane_of(mec):
    direct = mec._holder[1]
    assert isinstance(direct, DirectCalls)
    return direct.lane


@pytest_twisted.ensureDeferred
async def test_blocking_calls_skip_the_reactor_thread(lane_blocking):
    cluster = await lane_blocking.start(2, lane=True)

    def user():
        mec, hand_over = counted_client(cluster, lane_blocking)
        mec.execute("a = 1")  # joins the lane (through the reactor) on first use
        before = hand_over.count
        for i in range(5):
            mec.execute(f"a += {i}")
        pulled = mec.pull("a")
        ids = mec.get_ids()
        return hand_over.count - before, pulled, ids
    hand_overs, pulled, ids = await lane_blocking.run(user)
    assert hand_overs == 0
    assert pulled == [11, 11]
    assert ids == [0, 1]


@pytest_twisted.ensureDeferred
async def test_without_a_lane_every_call_takes_the_reactor_path(lane_blocking):
    cluster = await lane_blocking.start(1, lane=False)

    def user():
        mec, hand_over = counted_client(cluster, lane_blocking)
        mec.execute("a = 1")
        before = hand_over.count
        assert mec.pull("a") == [1]
        return hand_over.count - before, mec._holder[1].lane
    hand_overs, lane = await lane_blocking.run(user)
    assert hand_overs == 1
    assert lane is None


@pytest_twisted.ensureDeferred
async def test_engine_errors_are_the_same_on_the_direct_path(lane_blocking):
    cluster = await lane_blocking.start(2, lane=True)

    def user():
        mec, _ = counted_client(cluster, lane_blocking)
        with pytest.raises(CompositeError) as info:
            mec.execute("1/0")
        with pytest.raises(InvalidEngineID):
            mec.execute("a = 1", targets=[7])
        return str(info.value), lane_of(mec)
    text, lane = await lane_blocking.run(user)
    assert "[0:execute]: ZeroDivisionError: division by zero" in text
    assert lane is not None and not lane.closed


@pytest_twisted.ensureDeferred
async def test_bulk_arguments_are_serialized_once_and_bulk_answers_fetched(lane_blocking,
                                                                            monkeypatch):
    # The push's array goes on the data channel (sent by the reactor and a
    # pool thread) and the call on the lane: the array is pickled once, never
    # again on a hand-back to the reactor path.
    from ipkernel import serialize
    cluster = await lane_blocking.start(2, lane=True, data_channel=True)
    big = numpy.arange(refs.THRESHOLD // 8 * 4, dtype=numpy.float64)
    pickled, original = [], serialize.serialize

    def counting(value, *args, **kwargs):
        if value is big:
            pickled.append(threading.current_thread().name)
        return original(value, *args, **kwargs)
    monkeypatch.setattr(serialize, "serialize", counting)

    def user():
        mec, hand_over = counted_client(cluster, lane_blocking)
        mec.execute("a = 1")
        lane = lane_of(mec)
        before, calls = hand_over.count, lane.calls
        mec.push({"x": big}, targets=0)
        pushed, on_lane = hand_over.count - before, lane.calls - calls
        before = hand_over.count
        back = mec.pull("x", targets=0)[0]    # direct, the blob fetched by the reactor
        return pushed, on_lane, hand_over.count - before, back, lane
    pushed, on_lane, pulled, back, lane = await lane_blocking.run(user)
    assert len(pickled) == 1, pickled
    assert pushed == 1 and on_lane == 1  # one hand-over: only the sending of the blob
    assert pulled == 1  # one hand-over: only the fetch of the blob
    assert numpy.array_equal(back, big)
    assert not lane.closed


@pytest_twisted.ensureDeferred
async def test_a_timed_out_call_closes_its_lane_and_the_next_call_joins_another(
        lane_blocking, gates):
    cluster = await lane_blocking.start(1, lane=True)
    gate = gates.new()
    seen = {}

    def user():
        mec, _ = counted_client(cluster, lane_blocking)
        mec.execute("a = 1")
        seen["first"] = lane_of(mec)
        with pytest.raises(CallTimeout, match="did not finish within 0.5 s"):
            mec.execute(gate.code, timeout=0.5)
        return mec
    mec = await lane_blocking.run(user)
    assert seen["first"].closed
    gate.open()

    def after():
        return mec.execute("a + 1", timeout=10)[0]["display"]["repr"], lane_of(mec)
    shown, lane = await lane_blocking.run(after)
    assert shown == "2"
    assert lane is not seen["first"] and not lane.closed


@pytest_twisted.ensureDeferred
async def test_an_interrupted_wait_raises_at_once_and_the_client_goes_on(
        lane_blocking, gates, raise_in_thread):
    cluster = await lane_blocking.start(1, lane=True)
    gate = gates.new()
    seen = {}

    def user():
        mec, _ = counted_client(cluster, lane_blocking)
        mec.execute("a = 1")
        seen["thread"] = threading.get_ident()
        try:
            mec.execute(gate.code, timeout=None)
        except KeyboardInterrupt:
            seen["interrupted"] = True
        seen["lane"] = lane_of(mec)
        return mec
    done = lane_blocking.run(user)
    await gate.wait_arrivals(1)
    raise_in_thread(seen["thread"], KeyboardInterrupt)
    mec = await done
    assert seen["interrupted"] and seen["lane"].closed
    gate.open()
    assert await lane_blocking.run(mec.get_ids) == [0]


@pytest_twisted.ensureDeferred
async def test_a_lane_closed_by_the_controller_fails_the_call_and_the_client_goes_on(
        lane_blocking):
    from ipkernel.error import ControllerError

    cluster = await lane_blocking.start(1, lane=True)
    mec, _ = await lane_blocking.run(counted_client, cluster, lane_blocking)
    await lane_blocking.run(mec.execute, "a = 1")
    first = lane_of(mec)
    from ipkernel.lane import OffersLane

    for lane in list(cluster.lane_server._lanes):
        if isinstance(lane.local, OffersLane):  # the client's lanes, not the engines'
            lane.transport.loseConnection()

    def user():
        try:
            mec.execute("a += 1")
        except ControllerError as exc:
            return str(exc)
        return None
    message = await lane_blocking.run(user)
    # the call either failed on the closed lane or found it closed and went
    # through the reactor; either way the next calls work on a new lane
    assert message is None or "lost the connection to the controller" in message
    assert first.closed
    assert await lane_blocking.run(mec.get_ids) == [0]
    assert not lane_of(mec).closed


@pytest_twisted.ensureDeferred
async def test_threads_calling_at_once_all_get_their_answers(lane_blocking):
    cluster = await lane_blocking.start(2, lane=True)
    mec, _ = await lane_blocking.run(counted_client, cluster, lane_blocking)

    def many(k):
        return [mec.execute(f"v{k} = {i}")[0]["input"]["raw"] for i in range(20)]
    results = await lane_blocking.run(lambda: _in_threads(many, 4))
    assert results == [[f"v{k} = {i}" for i in range(20)] for k in range(4)]


def _in_threads(func, n):
    out = [None] * n
    errors = []

    def run(k):
        try:
            out[k] = func(k)
        except BaseException as exc:  # noqa: B902 - reported below
            errors.append(exc)
    threads = [threading.Thread(target=run, args=(k,)) for k in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    if errors:
        raise errors[0]
    return out
