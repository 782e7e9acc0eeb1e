"""Tier 2: a local object's lane handlers (``lane_handler``) on real lanes on
127.0.0.1: what they take is answered without ``remote_<method>``, what they
decline goes to it, and their faults and answers are checked and reported as
``remote_<method>``'s would be."""
import pytest
import pytest_twisted
from foolscap.api import RemoteException, Violation

from awaiting import raises, within
from lanehelpers import Growing, Probe, ProbeFault, started_lanes

pytestmark = pytest.mark.tier2


class HandlingProbe(Probe):
    """Takes ``add`` itself (answering a + b + 1000, so a test can tell), and
    ``later`` when the key starts with "direct" (answered when the test says);
    ``echo`` raises in its handler; everything else is declined."""

    def __init__(self):
        super().__init__()
        self.handled = Growing()
        self.answers = {}
        self.asked = []

    def _took(self, method):
        self.handled.append(method)

    def wait_handled(self, n):
        """Deferred firing (bounded) once the handlers took ``n`` calls."""
        return self.handled.wait(n)

    def lane_handler(self, method):
        self.asked.append(method)
        return {"add": self._add, "later": self._later, "echo": self._echo,
                "record": self._decline}.get(method)

    def _add(self, args, kwargs, answer):
        a, b = args if args else (kwargs["a"], kwargs["b"])
        self._took("add")
        answer(a + b + 1000)
        return True

    def _later(self, args, kwargs, answer):
        if not args[0].startswith("direct"):
            return False
        self.answers[args[0]] = answer
        self._took("later")
        return True

    def _echo(self, args, kwargs, answer):
        raise ProbeFault("the handler broke")

    def _decline(self, args, kwargs, answer):
        return False


@pytest_twisted.async_yield_fixture
async def lanes():
    async for made in started_lanes():
        yield made


@pytest_twisted.ensureDeferred
async def test_a_taken_call_is_answered_by_the_handler_alone(lanes):
    probe = HandlingProbe()
    client, served = await lanes.join(probe)
    assert await within(client.callRemote("add", 2, 40)) == 1042
    assert await within(client.callRemote("add", a=1, b=2)) == 1003
    assert probe.handled == ["add", "add"] and "add" not in probe.calls
    assert served.handled_in == 2 and served.calls_in == 2


@pytest_twisted.ensureDeferred
async def test_a_declined_call_goes_to_the_remote_method(lanes):
    probe = HandlingProbe()
    client, served = await lanes.join(probe)
    assert await within(client.callRemote("record", 7)) == 1
    assert probe.seen == [7] and probe.calls == ["record"] and probe.handled == []
    assert served.handled_in == 0 and served.calls_in == 1


@pytest_twisted.ensureDeferred
async def test_handlers_are_asked_once_per_method(lanes):
    probe = HandlingProbe()
    client, _ = await lanes.join(probe)
    for n in range(3):
        await within(client.callRemote("record", n))
        await within(client.callRemote("add", n, n))
    assert await within(client.callRemote("fail", "x").addErrback(lambda f: "failed")) == "failed"
    assert probe.asked == ["record", "add", "fail"]   # no handler for fail: remote_fail ran
    assert probe.calls == ["record"] * 3 + ["fail"]


@pytest_twisted.ensureDeferred
async def test_a_handler_may_answer_later_and_calls_keep_their_order(lanes):
    probe = HandlingProbe()
    client, served = await lanes.join(probe)
    first = client.callRemote("later", "direct-first")
    second = client.callRemote("record", 5)
    third = client.callRemote("later", "slow")   # declined: remote_later holds it
    assert await within(second) == 1
    await probe.wait_calls(2)
    await probe.wait_handled(1)
    assert probe.handled == ["later"] and probe.calls == ["record", "later"]
    assert not first.called and not third.called
    probe.pending["slow"].callback("from remote_later")
    assert await within(third) == "from remote_later"
    probe.answers["direct-first"]({"from": "the handler"})
    assert await within(first) == {"from": "the handler"}
    assert served.handled_in == 1


@pytest_twisted.ensureDeferred
async def test_a_raising_handler_fails_the_call_like_a_raising_method(lanes):
    client, _ = await lanes.join(HandlingProbe())
    err = await raises(RemoteException, client.callRemote("echo", "anything"))
    inner = err.args[0]
    assert inner.type.__name__ == "ProbeFault" and not inner.check(Violation)
    assert inner.getErrorMessage() == "the handler broke"
    assert await within(client.callRemote("add", 1, 2)) == 1003   # the lane carries on


@pytest_twisted.ensureDeferred
async def test_a_handlers_answer_is_checked_against_the_interface(lanes):
    probe = HandlingProbe()
    client, _ = await lanes.join(probe)
    d = client.callRemote("later", "direct-wrong")
    await probe.wait_handled(1)
    probe.answers["direct-wrong"](object())   # not something a lane carries
    err = await raises(RemoteException, d)
    assert "cannot be sent" in err.args[0].getErrorMessage()
    assert await within(client.callRemote("add", 0, 0)) == 1000


@pytest_twisted.ensureDeferred
async def test_arguments_are_checked_before_the_handler_sees_them(lanes):
    probe = HandlingProbe()
    client, _ = await lanes.join(probe)
    client.remote_interface = None   # send unchecked: the receiving side must refuse
    err = await raises(RemoteException, client.callRemote("add", "two", 3))
    assert err.args[0].check(Violation)
    assert probe.handled == []



# -- the same call text again ------------------------------------------------------


@pytest.fixture
def decodes(monkeypatch):
    """How many call texts the lanes decoded."""
    from ipkernel.lane import codec
    count = [0]
    decode = codec.decode

    def counting(text, buffers):
        count[0] += 1
        return decode(text, buffers)
    monkeypatch.setattr(codec, "decode", counting)
    return count


@pytest_twisted.ensureDeferred
async def test_the_same_small_call_again_is_decoded_and_checked_once(lanes, decodes):
    probe = Probe()
    client, _ = await lanes.join(probe)
    # (every answer is decoded too, on the client's side: one per call)
    for _ in range(5):
        assert await within(client.callRemote("record", 9)) == len(probe.seen)
    assert probe.seen == [9] * 5 and decodes[0] == 5 + 1
    assert await within(client.callRemote("record", 10)) == 6   # other text: decoded
    assert decodes[0] == 6 + 2
    for _ in range(3):   # a list argument could be changed by its method: decoded every time
        assert await within(client.callRemote("echo", [1, 2])) == [1, 2]
    assert decodes[0] == 9 + 5


@pytest_twisted.ensureDeferred
async def test_a_refused_call_is_refused_every_time_it_comes(lanes, decodes):
    probe = HandlingProbe()
    client, _ = await lanes.join(probe)
    client.remote_interface = None   # unchecked on the way out
    for _ in range(3):
        err = await raises(RemoteException, client.callRemote("add", "two", 3))
        assert err.args[0].check(Violation)
    assert probe.handled == [] and decodes[0] == 3 + 3   # each call and each FAIL
