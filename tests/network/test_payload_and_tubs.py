"""Tier 2: the controller's payload cap, and the options every Tub gets."""
import numpy
import pytest
import pytest_twisted
from foolscap.api import Referenceable, RemoteException
from twisted.internet import reactor

from ipkernel import fcutil
from ipkernel.error import CompositeError, PayloadTooLarge
from ipkernel.serialize import serialize

from awaiting import within

pytestmark = pytest.mark.tier2

CAP = 10_000


async def too_large(d):
    with pytest.raises(PayloadTooLarge) as info:
        await within(d)
    message = str(info.value)
    assert f"cap of {CAP} bytes" in message
    return message


@pytest_twisted.ensureDeferred
async def test_payload_cap_refuses_big_calls_and_touches_no_engine(make_fc_cluster):
    client = (await make_fc_cluster(2, payload_cap=CAP)).client
    big = numpy.zeros(CAP // 8 + 100)  # just over the cap once serialized
    message = await too_large(client.push({"big": big}))
    assert message.startswith("push:")
    await too_large(client.push({"half_a": big[: big.size // 2], "half_b": big[big.size // 2:]}))
    await too_large(client.push_serialized({"big": serialize(big)}))
    await too_large(client.push_function({"f": lambda: big}))
    await too_large(client.apply(len, (big,)))
    await too_large(client.scatter("big", numpy.zeros(3 * CAP)))
    await too_large(client.map(len, [big, big]))
    await too_large(client.push({"big": big}, block=False))
    with pytest.raises(CompositeError) as info:
        await within(client.pull(("big", "half_a", "f")))
    assert [type(e) for e in info.value.exceptions] == [NameError, NameError]

    # under the cap everything works, and results coming back are not capped
    assert await within(client.push({"small": big[:100]})) == [None, None]
    assert await within(client.execute("grown = [0.0] * 5000")) is not None
    grown = await within(client.pull("grown", targets=0))
    assert len(grown[0]) == 5000


@pytest_twisted.ensureDeferred
async def test_a_scatter_asking_the_controller_to_flatten_is_refused_saying_why(
        make_fc_cluster):
    from ipkernel import serialize, wire

    cluster = await make_fc_cluster(2)
    parts = [serialize.serialize([k]) for k in range(2)]
    answer = await within(cluster.client.remote.rref.callRemote(
        "scatter", "x", parts, True, wire.encode_targets("all"), True))
    assert isinstance(answer, wire.ErrorRecord) and answer.ename == "ValueError"
    assert "flatten" in answer.evalue and "send flatten=False" in answer.evalue
    await within(cluster.client.scatter("y", [1, 2], flatten=True))   # the client's way
    assert await within(cluster.client.pull("y")) == [1, 2]


@pytest_twisted.ensureDeferred
async def test_no_cap_by_default(make_fc_cluster):
    client = (await make_fc_cluster(1)).client
    big = numpy.arange(200_000)
    await within(client.push({"big": big}))
    assert numpy.array_equal((await within(client.pull("big")))[0], big)


class Thrower(Referenceable):
    def remote_fail(self):
        raise ValueError("thrown on the other side")


@pytest_twisted.ensureDeferred
async def test_tubs_do_not_expose_remote_exception_types(make_tub):
    server = make_tub()
    await fcutil.listen(server, reactor)
    furl = fcutil.register(server, Thrower())
    rref = await within(make_tub().getReference(furl))
    # With foolscap's default a failed call raises AttributeError out of
    # ``await`` (its CopiedFailure has a str value); here it is one
    # RemoteException carrying the copied failure.
    with pytest.raises(RemoteException) as info:
        await within(rref.callRemote("fail"))
    copied = info.value.args[0]
    assert copied.check(ValueError)
    assert "thrown on the other side" in copied.getErrorMessage()


def test_make_tub_options(cert_pool):
    tub = fcutil.make_tub(cert_data=cert_pool.get(0))
    assert tub._expose_remote_exception_types is False
    assert fcutil.TUB_OPTIONS == {"expose-remote-exception-types": False, "accept-gifts": False}
    assert tub.getTubID() == fcutil.make_tub(cert_data=cert_pool.get(0)).getTubID()
    assert tub.getTubID() != fcutil.make_tub(cert_data=cert_pool.get(1)).getTubID()
