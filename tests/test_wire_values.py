"""Tier 1: walking answers for Serialized values (``wire.decode_values``,
``refs`` finding the references inside a value)."""
import pytest

from ipkernel import wire
from ipkernel.datachannel import refs
from ipkernel.serialize import Serialized, serialize

pytestmark = pytest.mark.tier1


class Shape:
    """A value that only pickling carries."""

    def __init__(self, n):
        self.n = n

    def __eq__(self, other):
        return isinstance(other, Shape) and other.n == self.n


def test_serialized_values_are_rebuilt_wherever_they_are():
    value = {"top": serialize(Shape(1)),
             "deep": [1, (serialize(Shape(2)), "x"), {"k": [serialize([3, 4])]}],
             "plain": [1, 2.5, None, True, b"raw", "text"]}
    out = wire.decode_values(value)
    assert out == {"top": Shape(1), "deep": [1, (Shape(2), "x"), {"k": [[3, 4]]}],
                   "plain": [1, 2.5, None, True, b"raw", "text"]}
    assert type(out["deep"][1]) is tuple
    # the input keeps its Serialized (containers with something rebuilt are copied)
    assert isinstance(value["top"], Serialized) and isinstance(value["deep"][1][0], Serialized)
    assert out["plain"] is value["plain"]  # nothing inside to rebuild: the same list


def test_plain_answers_come_back_as_they_are():
    results = [{"id": i, "number": 3, "input": "a=1", "stdout": "", "stderr": ""}
               for i in range(64)]
    assert wire.decode_values(results) is results
    assert wire.decode_values(("a", 1)) == ("a", 1)
    assert wire.decode_values(7) == 7 and wire.decode_values(None) is None
    assert wire.decode_values(serialize(Shape(5))) == Shape(5)


def test_the_references_inside_a_value_are_found():
    ref = Serialized([], "pickle", {refs.REF_KEY: ["ab" * 8, [3]]})
    inline = serialize(Shape(1))
    value = [1, {"a": ref, "b": [inline, ("x", ref)]}, "text", None]
    assert refs._leaves(value) == [ref, inline, ref]
    assert refs.blob_ids(value) == [bytes.fromhex("ab" * 8)] * 2
    assert refs._leaves(ref) == [ref] and refs.blob_ids(ref) == [bytes.fromhex("ab" * 8)]
    assert refs._leaves([1, "a", {"k": (2, 3)}]) == [] and refs._leaves("a") == []
    assert not refs.has_large(value) and refs.has_large([Serialized([b"x" * 300_000], "pickle",
                                                                    {})])
