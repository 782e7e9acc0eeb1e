"""Tier 1: partitioning sequences across engines and joining them back."""
import sys

import numpy
import pytest

from ipkernel.mapping import DISTRIBUTIONS, join, partition, partitions
from ipkernel.controller.multiengine import map_parts
from ipkernel.engine.functions import SingleArguments

pytestmark = pytest.mark.tier1

BAD_DIST_MESSAGE = "unknown distribution 'x': use 'b' (blocks) or 'r' (round robin)"


def test_distributions():
    assert DISTRIBUTIONS == ("b", "r")


@pytest.mark.parametrize("n, q, sizes", [
    (10, 4, [3, 3, 2, 2]),
    (16, 4, [4, 4, 4, 4]),
    (3, 5, [1, 1, 1, 0, 0]),
    (0, 3, [0, 0, 0]),
    (7, 1, [7]),
])
def test_block_sizes(n, q, sizes):
    parts = partitions(list(range(n)), q, "b")
    assert [len(part) for part in parts] == sizes
    assert sum(parts, []) == list(range(n))


def test_block_parts_are_contiguous():
    seq = list(range(10))
    assert [partition(seq, p, 4) for p in range(4)] == [[0, 1, 2], [3, 4, 5], [6, 7], [8, 9]]


def test_round_robin_parts_are_strided():
    seq = list(range(10))
    assert partitions(seq, 4, "r") == [[0, 4, 8], [1, 5, 9], [2, 6], [3, 7]]
    assert partition("abcdefgh", 1, 3, "r") == "beh"


@pytest.mark.parametrize("dist", DISTRIBUTIONS)
@pytest.mark.parametrize("seq", [list(range(11)), tuple(range(11)), range(11),
                                 "abcdefghijk", b"abcdefghijk"])
def test_parts_keep_the_sequence_type(seq, dist):
    parts = partitions(seq, 3, dist)
    assert all(type(part) is type(seq) for part in parts)
    assert sorted(x for part in parts for x in part) == sorted(seq)


@pytest.mark.parametrize("dist", DISTRIBUTIONS)
def test_numpy_parts_are_views(dist):
    array = numpy.arange(24).reshape(12, 2).copy()  # owns its data
    parts = partitions(array, 5, dist)
    assert all(isinstance(part, numpy.ndarray) and part.base is array for part in parts)
    assert all(numpy.shares_memory(part, array) for part in parts if part.size)
    assert sum(len(part) for part in parts) == 12
    assert parts[0].shape[1:] == (2,)
    array[0, 0] = -1  # a view sees changes to the original
    assert parts[0][0, 0] == -1


@pytest.mark.parametrize("dist", DISTRIBUTIONS)
@pytest.mark.parametrize("make, joined_type", [
    (list, list), (tuple, list), (lambda r: r, list),
    (lambda r: "".join(chr(97 + i % 26) for i in r), str),
    (lambda r: bytes(i % 256 for i in r), bytes),
])
def test_join_undoes_partition(make, joined_type, dist):
    for n in range(0, 13):
        seq = make(range(n))
        for q in range(1, 8):
            joined = join(partitions(seq, q, dist), dist)
            assert type(joined) is joined_type
            assert list(joined) == list(seq), (n, q)


@pytest.mark.parametrize("dist", DISTRIBUTIONS)
def test_join_numpy_concatenates_in_order(dist):
    array = numpy.arange(30, dtype=numpy.float32).reshape(10, 3)
    for q in range(1, 13):
        parts = partitions(array, q, dist)
        joined = join(parts, dist)
        assert isinstance(joined, numpy.ndarray)
        assert joined.dtype == numpy.float32
        assert numpy.array_equal(joined, array)
        assert not numpy.shares_memory(joined, array)


def test_join_numpy_promotes_dtypes():
    joined = join([numpy.array([1, 2]), numpy.array([0.5])], "b")
    assert joined.dtype == numpy.float64
    assert joined.tolist() == [1.0, 2.0, 0.5]
    joined = join([numpy.array([0, 2]), numpy.array([1.5])], "r")
    assert joined.tolist() == [0.0, 1.5, 2.0]


def test_join_round_robin_restores_the_order():
    assert join([[0, 3, 6], [1, 4], [2, 5]], "r") == [0, 1, 2, 3, 4, 5, 6]
    assert join(["adg", "be", "cf"], "r") == "abcdefg"
    assert join([b"ac", b"b"], "r") == b"abc"


def test_join_blocks_flattens_one_level():
    assert join([[1, [2]], (3,), []], "b") == [1, [2], 3]


def test_join_takes_bare_items_as_one_item_parts():
    # what gathering a scatter(..., flatten=True) of one item per engine gives
    assert join([0, 1, 2], "b") == [0, 1, 2]
    assert join([10, 11, 12], "r") == [10, 11, 12]
    assert join([[1, 2], None], "b") == [1, 2, None]


def test_join_of_no_parts_is_an_empty_list():
    assert join([], "b") == []
    assert join([], "r") == []


def test_join_leaves_the_parts_alone():
    parts = [[0, 2], [1]]
    assert join(parts, "r") == [0, 1, 2]
    assert parts == [[0, 2], [1]]


def test_join_round_robin_rejects_impossible_parts():
    with pytest.raises(ValueError, match="round-robin"):
        join([[0], [1, 2, 3]], "r")
    with pytest.raises(ValueError, match="round-robin"):
        join(["a", "bcd"], "r")


@pytest.mark.parametrize("call", [
    lambda: partition([1, 2], 0, 1, "x"),
    lambda: partitions([1, 2], 2, "x"),
    lambda: join([[1], [2]], "x"),
])
def test_unknown_distribution(call):
    with pytest.raises(ValueError) as info:
        call()
    assert str(info.value) == BAD_DIST_MESSAGE


@pytest.mark.parametrize("p, q", [(-1, 3), (3, 3), (0, 0), (0, -2), (1.5, 3),
                                  (0, "3"), (True, 3), (0, None)])
def test_bad_part_numbers(p, q):
    with pytest.raises(ValueError):
        partition([1, 2, 3], p, q)


def test_numpy_integers_are_valid_part_numbers():
    assert partition(list(range(10)), numpy.int64(1), numpy.int32(4)) == [3, 4, 5]


@pytest.mark.parametrize("q", [0, -1, 2.0])
def test_bad_number_of_partitions(q):
    with pytest.raises(ValueError):
        partitions([1, 2, 3], q)


@pytest.mark.parametrize("seq", [{1: 2}, {1, 2}, (x for x in range(3)), 7])
def test_cannot_partition_what_cannot_be_sliced(seq):
    with pytest.raises(TypeError, match="cannot partition"):
        partition(seq, 0, 2)


def test_works_without_numpy(monkeypatch):
    monkeypatch.setitem(sys.modules, "numpy", None)  # as if numpy were not installed
    assert partitions(list(range(5)), 2, "r") == [[0, 2, 4], [1, 3]]
    assert join([[0, 2, 4], [1, 3]], "r") == [0, 1, 2, 3, 4]
    assert join(["ab", "c"], "b") == "abc"


# --- map_parts: how a map's arguments are split ------------------------------------------

def test_map_parts_of_one_list_tuple_or_range_are_single_arguments():
    for seq in (list(range(7)), tuple(range(7)), range(7)):
        parts = map_parts([seq], 3)
        assert all(isinstance(p, SingleArguments) for p in parts)
        assert [list(p.items) for p in parts] == [[0, 1, 2], [3, 4], [5, 6]]
        assert type(parts[0].items) is type(seq)  # a range slice stays a range
    assert [list(p.items) for p in map_parts([range(7)], 3, "r")] == [[0, 3, 6], [1, 4], [2, 5]]


def test_map_parts_of_several_or_other_sequences_are_argument_tuples():
    assert map_parts([range(4), "abcd"], 2) == [[(0, "a"), (1, "b")], [(2, "c"), (3, "d")]]
    assert map_parts(["abc"], 2) == [[("a",), ("b",)], [("c",)]]
    with pytest.raises(ValueError):
        map_parts([range(3), range(4)], 2)
    with pytest.raises(TypeError):
        map_parts(range(3), 2)
