"""Tier 1: the lane codec (``ipkernel.lane.codec``).

Every type of its vocabulary makes an exact round trip (types included:
a tuple stays a tuple, a bool a bool, dict keys keep their type); other
types are refused with CodecError naming them; malformed text always gives
CodecError, never another exception.
"""
import math
import pickle
import random

import pytest
from foolscap.api import Referenceable

from ipkernel.lane import codec
from ipkernel.lane.codec import CodecError
from ipkernel.serialize import Serialized
from ipkernel.wire import AsJson, ErrorRecord


def round_trip(value):
    text, buffers = codec.encode(value)
    assert isinstance(text, bytes)
    # the receiver sees buffers as bytes-like slices of what arrived
    return codec.decode(text, [bytes(memoryview(b).cast("B")) for b in buffers])


def same(a, b):
    """Exact equality, types included, all the way down (nan equals nan)."""
    assert type(a) is type(b), f"{a!r} ({type(a).__name__}) != {b!r} ({type(b).__name__})"
    if type(a) is float and math.isnan(a):
        assert math.isnan(b)
    elif type(a) in (list, tuple):
        assert len(a) == len(b)
        for x, y in zip(a, b):
            same(x, y)
    elif type(a) is dict:
        assert len(a) == len(b)
        for (ka, va), (kb, vb) in zip(a.items(), b.items()):
            same(ka, kb)
            same(va, vb)
    elif type(a) is Serialized:
        assert (a.type_descriptor, a.metadata) == (b.type_descriptor, b.metadata)
        assert [bytes(f) for f in a.frames] == [bytes(f) for f in b.frames]
    elif type(a) is ErrorRecord:
        assert list(a.state()) == list(b.state())
        for name in ErrorRecord.__slots__:
            same(getattr(a, name), getattr(b, name))
    else:
        assert a == b
        if type(a) is float:
            assert math.copysign(1, a) == math.copysign(1, b)


SCALARS = [
    None, True, False, 0, 1, -1, 2 ** 31, 2 ** 64 + 1, -(2 ** 200), 10 ** 100,
    0.0, -0.0, 1.5, -2.25e-300, 1e308, math.inf, -math.inf, math.nan,
    "", "plain", "é ü ß – ∑ 漢字 🚀", "quote \" backslash \\ nul \x00 newline \n",
    b"", b"\x00\xff raw", bytes(range(256)),
]


@pytest.mark.parametrize("value", SCALARS, ids=repr)
def test_scalars_round_trip_exactly(value):
    same(value, round_trip(value))


def test_bool_stays_bool_and_int_stays_int():
    out = round_trip([True, 1, False, 0])
    assert [type(x) for x in out] == [bool, int, bool, int]


def test_bytes_travel_as_buffers_not_in_the_text():
    blob = b"\x01\x02BLOB-MARKER\x03"
    text, buffers = codec.encode({"k": blob})
    assert b"BLOB-MARKER" not in text
    assert [bytes(b) for b in buffers] == [blob]


@pytest.mark.parametrize("kind", [bytearray, memoryview])
def test_bytearray_and_memoryview_arrive_as_bytes(kind):
    raw = b"some \x00 data"
    out = round_trip([kind(raw)])
    assert type(out[0]) is bytes and out[0] == raw


NESTED = [
    [], (), {}, [[]], ((),), {"": {}},
    (1,), (1, "two", (3.0, [None, b"x"])),
    [1, (2, [3, {"k": (4,)}])],
    {1: "int key", "1": "str key", 2.5: "float key", None: "none key", True: "bool key"},
    {(1, "a"): "tuple key", (): "empty tuple key", b"k": "bytes key", ((1, 2), 3): {}},
    {"outer": {"inner": [(), [], {}], "t": (True, False, None)}},
]


@pytest.mark.parametrize("value", NESTED, ids=repr)
def test_containers_round_trip_exactly(value):
    same(value, round_trip(value))


def test_dict_keys_keep_their_types_and_order():
    value = {3: "a", "3": "b", (3,): "c", b"3": "d", 3.5: "e", False: "f"}
    out = round_trip(value)
    assert [type(k) for k in out] == [int, str, tuple, bytes, float, bool]
    assert list(out.items()) == list(value.items())


@pytest.mark.parametrize("frames", [[], [b"one"], [b"a", b"", b"\x00" * 1000, bytes(range(256))]],
                         ids=["no frames", "one frame", "several frames"])
def test_serialized_round_trips_with_frames_and_metadata(frames):
    value = Serialized(frames, "ndarray", {"shape": [2, 3], "dtype": "<f8", "nested": {"a": [1]}})
    out = round_trip(value)
    assert type(out) is Serialized
    same(value, out)
    assert len(out.frames) == len(frames)


def test_serialized_frames_are_buffers_not_text():
    value = Serialized([b"FRAME-ONE", b"FRAME-TWO"], "pickle", {})
    text, buffers = codec.encode(value)
    assert b"FRAME" not in text
    assert [bytes(b) for b in buffers] == [b"FRAME-ONE", b"FRAME-TWO"]


def test_several_serialized_and_bytes_share_the_buffers_in_order():
    value = [Serialized([b"a", b"b"]), b"c", {"s": Serialized([b"d"], "pickle", {"m": 1})},
             Serialized([]), b"e"]
    text, buffers = codec.encode(value)
    assert [bytes(b) for b in buffers] == [b"a", b"b", b"c", b"d", b"e"]
    same(value, round_trip(value))


def test_error_record_round_trips_with_nested_errors_and_a_pickled_exception():
    pickled = Serialized([pickle.dumps(ValueError("inner marker"))], "pickle", {})
    inner = ErrorRecord("ValueError", "inner marker", "builtins", "Traceback...\n",
                        {"engine_id": 1, "method": "execute"}, pickled)
    plain = ErrorRecord("KeyError", "'k'", "builtins")
    record = ErrorRecord("CompositeError", "2 errors", "ipkernel.error", "",
                         None, None, [inner, plain], "one or more exceptions")
    out = round_trip(record)
    assert type(out) is ErrorRecord
    same(record, out)
    assert [type(e) for e in out.errors] == [ErrorRecord, ErrorRecord]
    assert type(out.errors[0].exception) is Serialized
    assert str(pickle.loads(out.errors[0].exception.frames[0])) == "inner marker"


def test_as_json_arrives_as_its_plain_data():
    value = [{"number": 1, "input": {"raw": "a=1"}, "id": 0, "stdout": "é\n"}, None, 2.5]
    out = round_trip(AsJson(value))
    assert out == value
    assert type(out) is list and type(out[0]) is dict


def test_the_whole_vocabulary_together():
    value = {"args": (1, [True, None], {"k": b"v"}),
             "payload": Serialized([b"x", bytearray(b"y")], "pickle", {}),
             "error": ErrorRecord("E", "v"), 7: AsJson({"a": [1, 2]})}
    out = round_trip(value)
    assert out[7] == {"a": [1, 2]}
    assert [bytes(f) for f in out["payload"].frames] == [b"x", b"y"]
    same(value["args"], out["args"])
    same(value["error"], out["error"])


# -- refusals --------------------------------------------------------------------------


class Thing:
    pass


class Ref(Referenceable):
    pass


class MyInt(int):
    pass


@pytest.mark.parametrize("value, name", [
    (Ref(), "Ref"), (Thing(), "Thing"), ({1, 2}, "set"), (frozenset(), "frozenset"),
    (MyInt(3), "MyInt"), (1 + 2j, "complex"), (print, "builtin_function_or_method"),
])
def test_other_types_are_refused_naming_the_type(value, name):
    with pytest.raises(CodecError, match=rf"\ba {name}\b"):
        codec.encode(value)


@pytest.mark.parametrize("wrap", [
    lambda v: [v], lambda v: (1, v), lambda v: {"k": v}, lambda v: {(v,): 1},
    lambda v: {"deep": [({"x": v},)]},
], ids=["list", "tuple", "dict value", "dict key", "deep"])
def test_refusal_applies_inside_containers(wrap):
    with pytest.raises(CodecError, match="Thing"):
        codec.encode(wrap(Thing()))


@pytest.mark.parametrize("value", [
    AsJson({"v": {1, 2}}), AsJson([b"raw"]), AsJson(object()),
    Serialized([b"x"], "pickle", {"k": b"v"}), Serialized([b"x"], "pickle", {"k": {1}}),
    10 ** 5000, [1, -(10 ** 5000)],
], ids=["as-json-set", "as-json-bytes", "as-json-object", "metadata-bytes", "metadata-set",
        "huge-int", "huge-int-inside"])
def test_values_the_json_text_cannot_hold_are_refused_with_codec_error(value):
    with pytest.raises(CodecError):
        codec.encode(value)


def test_a_cycle_in_plain_json_data_is_refused_with_codec_error():
    cyclic = {"name": "loop"}
    cyclic["self"] = [cyclic]
    with pytest.raises(CodecError, match="cannot be sent on a lane"):
        codec.encode(AsJson(cyclic))
    assert codec.decode(*codec.encode(AsJson({"fine": [1]}))) == {"fine": [1]}


# -- malformed input -------------------------------------------------------------------

BUFFERS = [b"zero", b"one", b"two"]

MALFORMED = [
    b"", b"{", b"[1,", b"not json", b"\xff\xfe", b"[1]]", b"{'t': []}",
    b'{"x":[1]}',                      # unknown tag
    b'{"t":[1],"d":[]}',               # a tag with two keys
    b"{}",                             # no tag at all
    b'{"b":3}', b'{"b":-1}', b'{"b":"0"}', b'{"b":1.0}', b'{"b":true}', b'{"b":null}',
    b'{"s":["pickle",{},2,2]}',        # frames run past the buffers
    b'{"s":["pickle",{},-1,1]}', b'{"s":["pickle",{},0,-1]}', b'{"s":["pickle",{},0]}',
    b'{"s":[1,{},0,1]}', b'{"s":["pickle",[],0,1]}', b'{"s":["pickle",{},"0",1]}',
    b'{"s":["pickle",{},0,1.5]}', b'{"s":"pickle"}', b'{"s":null}',
    b'{"d":[1]}', b'{"d":[1,2,3]}',    # odd-length dict list
    b'{"d":{"a":1}}', b'{"d":5}',
    b'{"d":[[1],2]}', b'{"d":[{"d":[]},2]}', b'{"d":[{"t":[[1]]},2]}',  # unhashable keys
    b'{"e":5}', b'{"e":[1]}', b'{"e":{"d":[1,2]}}', b'{"e":{"d":[]}}',
    b'{"e":{"d":["ename","X","bogus",1]}}', b'{"e":{"d":["ename","X","errors",5]}}',
    b'{"e":{"d":["ename","X","engine_info","ab"]}}', b'{"e":{"d":["ename","X","engine_info",3]}}',
    b'{"t":5}', b'{"t":null}',
    b"[" * 100000 + b"]" * 100000,     # nested too deep for the decoder
    b'{"t":[' * 20000 + b"]}" * 20000,
]


@pytest.mark.parametrize("text", MALFORMED, ids=lambda t: repr(t[:40]))
def test_malformed_text_gives_codec_error(text):
    with pytest.raises(CodecError):
        codec.decode(text, BUFFERS)


def test_malformed_text_may_also_be_a_memoryview_or_str():
    with pytest.raises(CodecError):
        codec.decode(memoryview(b'{"x":1}'), [])
    with pytest.raises(CodecError):
        codec.decode('{"b":9}', [])
    assert codec.decode(memoryview(b'{"b":0}'), [b"ok"]) == b"ok"
    assert codec.decode('{"t":[1]}', []) == (1,)


def test_a_codec_error_is_a_value_error():
    assert issubclass(CodecError, ValueError)


def _mutations(text, rng, count):
    alphabet = b'{}[]",:0123456789-.etbdsjxnul \\' + bytes([0xff, 0x80])
    for _ in range(count):
        data = bytearray(text)
        for _ in range(rng.randint(1, 3)):
            op = rng.randrange(4)
            pos = rng.randrange(len(data) + 1)
            if op == 0 and data:
                del data[min(pos, len(data) - 1)]
            elif op == 1:
                data.insert(pos, rng.choice(alphabet))
            elif op == 2 and data:
                data[min(pos, len(data) - 1)] = rng.choice(alphabet)
            else:  # move a slice: swaps structure around
                a, b = sorted((rng.randrange(len(data) + 1), rng.randrange(len(data) + 1)))
                chunk = data[a:b]
                del data[a:b]
                where = rng.randrange(len(data) + 1)
                data[where:where] = chunk
        yield bytes(data)


def test_mutated_messages_decode_or_give_codec_error_never_another_exception():
    rng = random.Random(20261121)
    samples = [
        ("method", (1, [True, None], {"k": b"v", (1, 2): 3.5}), {"targets": "all"}),
        [Serialized([b"a", b"bb"], "ndarray", {"shape": [2], "dtype": "<u1"}), b"ccc"],
        ErrorRecord("CompositeError", "x", "ipkernel.error", "",
                    errors=[ErrorRecord("E", "v", exception=Serialized([b"p"]))]),
        {"j": AsJson({"t": [1], "d": {"b": 0}}), None: ((), [], {})},
    ]
    decoded = failed = 0
    for sample in samples:
        text, buffers = codec.encode(sample)
        buffers = [bytes(memoryview(b).cast("B")) for b in buffers]
        for mutated in _mutations(text, rng, 1500):
            for bufs in (buffers, buffers[:1], []):
                try:
                    codec.decode(mutated, bufs)
                    decoded += 1
                except CodecError:
                    failed += 1
    # the loop did exercise both outcomes
    assert decoded > 100 and failed > 100
