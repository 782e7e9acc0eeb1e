"""Tier 1: packing many Serialized values into one buffer (ipkernel.framing)."""
import pytest

from ipkernel import framing
from ipkernel.serialize import Serialized, serialize, unserialize

pytestmark = pytest.mark.tier1


def test_round_trip_of_values_with_and_without_out_of_band_frames():
    np = pytest.importorskip("numpy")
    values = [1, "two", {"three": [3]}, np.arange(10.0), {"arr": np.ones(100_000)}, None, b""]
    items = [serialize(v) for v in values]
    back = framing.unpack(framing.pack(items))
    assert [b.type_descriptor for b in back] == [i.type_descriptor for i in items]
    assert [len(b.frames) for b in back] == [len(i.frames) for i in items]
    rebuilt = [unserialize(b) for b in back]
    assert rebuilt[:3] == values[:3] and rebuilt[5:] == values[5:]
    assert (rebuilt[3] == values[3]).all() and (rebuilt[4]["arr"] == 1).all()


def test_frames_are_slices_of_the_buffer_not_copies():
    data = framing.pack([Serialized([b"x" * 1000, b"y" * 10])])
    (item,) = framing.unpack(data)
    assert isinstance(item.frames[0], memoryview)
    assert item.frames[0].obj is data or bytes(item.frames[0]) == b"x" * 1000
    assert bytes(item.frames[1]) == b"y" * 10


def test_empty_list_and_metadata_kept():
    assert framing.unpack(framing.pack([])) == []
    (item,) = framing.unpack(framing.pack([Serialized([b"abc"], "custom", {"k": [1, 2]})]))
    assert (item.type_descriptor, item.metadata, bytes(item.frames[0])) == (
        "custom", {"k": [1, 2]}, b"abc")


@pytest.mark.parametrize("mangle, message", [
    (lambda d: b"NOPE" + d[4:], "bad magic"),
    (lambda d: d[:-3], "truncated"),
    (lambda d: d + b"\0", "left over"),
    (lambda d: d[:4] + (2 ** 31).to_bytes(4, "little") + d[8:], "more items"),
    (lambda d: b"", "bad magic"),
])
def test_malformed_buffers_are_refused_with_a_clear_error(mangle, message):
    data = framing.pack([serialize(1), serialize("two")])
    with pytest.raises(framing.FramingError, match=message):
        framing.unpack(mangle(data))


def test_ints_and_floats():
    assert framing.unpack_ints(framing.pack_ints([0, 1, 2 ** 32 - 1])) == [0, 1, 2 ** 32 - 1]
    assert framing.unpack_floats(framing.pack_floats([0.5, -1e300])) == [0.5, -1e300]
    with pytest.raises(OverflowError):
        framing.pack_ints([-1])
    with pytest.raises(framing.FramingError, match="partial"):
        framing.unpack_ints(b"\0\0\0")
