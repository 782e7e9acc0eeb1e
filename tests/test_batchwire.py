"""Tier 1: the wire form of engine batches (ipkernel.batchwire)."""
import pytest

from ipkernel import batchwire, framing
from ipkernel.serialize import Serialized, serialize, unserialize

pytestmark = pytest.mark.tier1


def _encode(value):
    return value if isinstance(value, Serialized) else serialize(value)


def test_calls_round_trip_and_functions_are_sent_once():
    func, kwargs = serialize(len), serialize({"k": 1})
    calls = [(func, (i,), kwargs) for i in range(50)] + [(serialize(abs), (-1,), None)]
    shared, refs, args = batchwire.calls_to_wire(calls, _encode)
    assert len(shared) == 4  # len, the shared kwargs, abs, and {} for None
    back = batchwire.calls_from_wire(shared, refs, args)
    assert len(back) == 51
    assert unserialize(back[3][0]) is len and unserialize(back[3][1]) == (3,)
    assert unserialize(back[3][2]) == {"k": 1}
    assert unserialize(back[50][0]) is abs and unserialize(back[50][2]) == {}


def test_malformed_calls_are_refused():
    shared, refs, args = batchwire.calls_to_wire([(serialize(len), ((),), None)], _encode)
    with pytest.raises(ValueError, match="needs 2 indexes"):
        batchwire.calls_from_wire(shared, framing.pack_ints([0]), args)
    with pytest.raises(ValueError, match="does not carry"):
        batchwire.calls_from_wire(shared, framing.pack_ints([0, 9]), args)
    with pytest.raises(framing.FramingError):
        batchwire.calls_from_wire(shared, refs, b"IPK1")
    with pytest.raises(TypeError, match="list of"):
        batchwire.calls_to_wire("calls", _encode)


def test_outcomes_round_trip():
    record = object()  # stands for an ErrorRecord: passed through untouched
    outcomes = [(True, serialize(1), 1.0, 2.0), (False, record, 3.0, 4.0),
                (None, None, None, None), (True, serialize("x"), 5.0, 6.0)]
    back = batchwire.outcomes_from_wire(*batchwire.outcomes_to_wire(outcomes))
    assert [(ok, t0, t1) for ok, _, t0, t1 in back] == [
        (True, 1.0, 2.0), (False, 3.0, 4.0), (None, None, None), (True, 5.0, 6.0)]
    assert unserialize(back[0][1]) == 1 and back[1][1] is record
    assert unserialize(back[3][1]) == "x"


def test_malformed_outcomes_are_refused():
    status, times, values, errors = batchwire.outcomes_to_wire([(True, serialize(1), 1.0, 2.0)])
    with pytest.raises(ValueError, match="number of times"):
        batchwire.outcomes_from_wire(status, framing.pack_floats([1.0]), values, errors)
    with pytest.raises(ValueError, match="fewer values"):
        batchwire.outcomes_from_wire(framing.pack_ints([1, 1]), framing.pack_floats([0.0] * 4),
                                     values, errors)
