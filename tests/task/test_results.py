"""ResultTable: finished results kept compactly, in finish order (tier 0)."""
import random
from collections import OrderedDict

import pytest
from twisted.python.failure import Failure

from ipkernel.serialize import Serialized
from ipkernel.task.results import BITMAP_IDS, COMPACT_MAX, PAGE, IdSet, ResultTable


def plain(n):
    return Serialized([b"p%d" % n])


def frames_of(pair):
    success, value = pair
    return success, [bytes(memoryview(f)) for f in value.frames], value.type_descriptor


def test_a_plain_result_is_kept_in_the_buffer_and_comes_back_equal():
    table = ResultTable()
    big = bytearray(b"0123456789") * 10
    table.add(7, True, Serialized([memoryview(big)[10:20]]))
    assert 7 in table and len(table) == 1 and list(table) == [7]
    assert table._objects == {}
    success, value = table[7]
    assert success is True and value.frames == [b"0123456789"]
    assert value.type_descriptor == "pickle" and value.metadata == {}
    big[10:20] = b"xxxxxxxxxx"  # the table holds a copy, not a view
    assert table[7][1].frames == [b"0123456789"]


@pytest.mark.parametrize("success, value", [
    (False, Failure(ValueError("x"))),
    (True, Serialized([b"a", b"b"])),
    (True, Serialized([b"a"], "ndarray", {"shape": [1]})),
    (True, Serialized([b"a"], "pickle", {"n": 1})),
    (True, Serialized([b"x" * (COMPACT_MAX + 1)])),
    (True, {"live": "object"}),
])
def test_other_results_are_kept_as_they_are(success, value):
    table = ResultTable()
    table.add(3, success, value)
    assert table[3] == (success, value) and table[3][1] is value


def test_missing_ids_and_odd_keys():
    table = ResultTable()
    table.add(5, True, plain(5))
    for key in (4, 6, 5 + PAGE, -1, "5", None):
        assert key not in table
        with pytest.raises(KeyError):
            table[key]
        assert table.discard(key) is False
    with pytest.raises(KeyError):
        table.add(5, True, plain(5))
    with pytest.raises(KeyError):
        ResultTable().pop_oldest()


def test_order_eviction_discard_and_clear():
    table = ResultTable()
    for taskid in (2, 0, 2000, 1):
        table.add(taskid, True, plain(taskid))
    table.add(9, False, Failure(KeyError("k")))
    assert list(table) == [2, 0, 2000, 1, 9]
    assert table.pop_oldest() == 2
    assert table.discard(2000) is True and table.discard(2000) is False
    assert [t for t, _ in table.items()] == [0, 1, 9]
    assert [(t, p is None) for t, p in table.kept()] == [(0, True), (1, True), (9, False)]
    assert frames_of(table[1]) == (True, [b"p1"], "pickle")
    table.clear()
    assert len(table) == 0 and list(table) == [] and 0 not in table
    table.add(0, True, plain(0))
    assert list(table) == [0]


def test_emptied_table_drops_its_buffers():
    table = ResultTable()
    for taskid in range(3 * PAGE):
        table.add(taskid, True, plain(taskid))
    assert len(table._pages) == 3 and len(table._data) > 0
    for taskid in range(3 * PAGE):
        table.discard(taskid)
    assert table._pages == {} and len(table._data) == 0 and len(table._order) == 0


def test_churn_matches_an_ordered_dict_and_stays_compact():
    """Random adds, discards and evictions: same content and order as an
    OrderedDict, and the buffer and order list stay proportional to what is kept."""
    rng = random.Random(1)
    table, model = ResultTable(), OrderedDict()
    next_id = live_bytes = 0

    def size(pair):
        return len(pair[1].frames[0]) if pair[0] else 0

    for step in range(20_000):
        op = rng.random()
        if op < 0.55 or not model:
            taskid, next_id = next_id, next_id + rng.choice((1, 1, 1, 50))
            if rng.random() < 0.1:
                pair = (False, Failure(ValueError(taskid)))
            else:
                pair = (True, Serialized([b"v%d" % taskid * rng.randint(1, 40)]))
            table.add(taskid, *pair)
            model[taskid] = pair
            live_bytes += size(pair)
        elif op < 0.8:
            old, pair = model.popitem(last=False)
            live_bytes -= size(pair)
            assert table.pop_oldest() == old
        else:
            taskid = rng.choice(list(model)) if rng.random() < 0.9 else next_id + 1
            pair = model.pop(taskid, None)
            assert table.discard(taskid) is (pair is not None)
            live_bytes -= size(pair) if pair else 0
        if step % 997 == 0:
            assert list(table) == list(model)
            for taskid, (success, value) in model.items():
                got = table[taskid]
                if success:
                    assert got[1].frames == [bytes(value.frames[0])]
                else:
                    assert got == (success, value)
        assert len(table) == len(model)
        assert len(table._order) - table._head <= 2 * len(model) + PAGE
        assert len(table._data) <= max(2 * live_bytes, 64 * PAGE + live_bytes) + 4000


def test_id_set():
    ids = IdSet([3, 0, BITMAP_IDS + 5, 3])
    assert len(ids) == 3
    for taskid in (0, 3, BITMAP_IDS + 5):
        assert taskid in ids
    for key in (1, 2, BITMAP_IDS, BITMAP_IDS + 4, 10 * BITMAP_IDS, -1, "3", None, 3.0):
        assert key not in ids
    ids.update(range(100, 200))
    assert len(ids) == 103 and 150 in ids and 200 not in ids
    ids.clear()
    assert len(ids) == 0 and 3 not in ids and ids._pages == {}


def wire_result(taskid, payload=b"payload", failure=None, submitted="2026/11/21 19:00:00"):
    from ipkernel.task.fc import WireResult
    tr = WireResult(Serialized([payload]) if payload is not None else None, 3, failure=failure)
    tr.taskid = taskid
    tr.submitted, tr.completed, tr.duration = submitted, "2026/11/21 19:00:01", 0.25
    return tr


def test_a_string_task_result_is_kept_in_the_buffer_and_comes_back_equal():
    table = ResultTable()
    tr = wire_result(12)
    table.add(12, True, tr)
    assert table._objects == {}
    success, got = table[12]
    assert success is True and type(got) is type(tr) and got is not tr
    kind, ok, payload, meta = got.to_wire()
    want = tr.to_wire()
    assert (kind, ok, meta) == want[:2] + (want[3],)
    assert payload.frames == [b"payload"] and payload.type_descriptor == "pickle"
    assert got.failure is None and got.results == {}


def test_string_task_results_that_do_not_fit_are_kept_as_they_are():
    from ipkernel.wire import record_from_exception
    record = record_from_exception(ValueError("v"))
    for taskid, tr in enumerate([wire_result(0, payload=None, failure=record),
                                 wire_result(1, submitted=None),
                                 wire_result(2, submitted="x" * 300),
                                 wire_result(3, payload=b"x" * (COMPACT_MAX + 1))]):
        table = ResultTable()
        table.add(taskid, True, tr)
        assert table[taskid][1] is tr
