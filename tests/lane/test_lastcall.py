"""Tier 1: a call made to many lanes with the same immutable arguments is
checked and encoded once (``ipkernel.lane.protocol._LastCall``)."""
import pytest
from foolscap.api import Violation

from ipkernel.lane import codec
from ipkernel.lane import protocol as lane_protocol

from lanehelpers import RILaneProbe


@pytest.fixture
def counted(monkeypatch):
    """The encodings and argument checks made, counted."""
    counts = {"encode": 0, "check": 0}
    encode, check = codec.encode, lane_protocol.check_call

    def counting_encode(value):
        counts["encode"] += 1
        return encode(value)

    def counting_check(*args):
        counts["check"] += 1
        return check(*args)
    monkeypatch.setattr(codec, "encode", counting_encode)
    monkeypatch.setattr(lane_protocol, "check_call", counting_check)
    return counts


def test_the_same_immutable_arguments_are_encoded_once(counted):
    last = lane_protocol._LastCall()
    text = "print('on every engine')"
    first = last.encoded(RILaneProbe, "echo", (text,), {})
    again = [last.encoded(RILaneProbe, "echo", (text,), {}) for _ in range(63)]
    assert counted == {"encode": 1, "check": 1}
    assert all(a[0] == first[0] and list(a[1]) == list(first[1]) for a in again)
    assert codec.decode(first[0], first[1]) == ("echo", (text,), {})


def test_other_arguments_methods_or_interfaces_are_encoded_afresh(counted):
    last = lane_protocol._LastCall()
    last.encoded(RILaneProbe, "add", (1, 2), {})
    text, buffers = last.encoded(RILaneProbe, "add", (1, 3), {})
    assert codec.decode(text, buffers) == ("add", (1, 3), {})
    last.encoded(RILaneProbe, "record", (3,), {})
    last.encoded(None, "record", (3,), {})  # unchecked: not the checked call's entry
    assert counted == {"encode": 4, "check": 3}


def test_mutable_arguments_are_never_reused(counted):
    last = lane_protocol._LastCall()
    value = {"a": 1}
    last.encoded(RILaneProbe, "echo", (value,), {})
    value["a"] = 2  # the same object, changed: its new content must travel
    text, buffers = last.encoded(RILaneProbe, "echo", (value,), {})
    assert codec.decode(text, buffers) == ("echo", ({"a": 2},), {})
    assert counted["encode"] == 2


def test_a_refused_call_is_refused_every_time(counted):
    last = lane_protocol._LastCall()
    for _ in range(2):
        with pytest.raises(Violation):
            last.encoded(RILaneProbe, "add", ("one", 2), {})
    assert counted == {"encode": 0, "check": 2}


def test_large_or_buffer_carrying_calls_are_not_kept(counted):
    last = lane_protocol._LastCall()
    source = "x = 1\n" * 20_000  # 120 KB of source: if kept, it would stay alive
    for _ in range(2):
        last.encoded(RILaneProbe, "echo", (source,), {})
    blob = b"b" * 100
    for _ in range(2):
        text, buffers = last.encoded(RILaneProbe, "echo", (blob,), {})
    assert codec.decode(text, buffers) == ("echo", (blob,), {})
    assert counted["encode"] == 4 and last.args is None
