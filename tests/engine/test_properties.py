"""Tier 1: StrictDict (plain data, copy-in/copy-out) and the EngineAPI registry."""
import copy
import itertools
import pickle
import threading

import pytest

from ipkernel.engine import StrictDict, drop_engine, get_engine
from ipkernel.error import InvalidProperty, KernelError

pytestmark = pytest.mark.tier1

_ids = itertools.count(90_000)

PLAIN = [None, True, False, 0, -7, 2 ** 80, 1.5, float("inf"), "", "text ☃", b"", b"\x00raw",
         [], [1, "a", None], (), (1, (2, (3,))), {}, {"k": [1, {"deep": (b"x", None)}]},
         [{"a": [()]}]]

NOT_PLAIN = [
    pytest.param(lambda: 1, id="lambda"),
    pytest.param(object(), id="object"),
    pytest.param({1, 2}, id="set"),
    pytest.param(frozenset(), id="frozenset"),
    pytest.param(threading.Lock(), id="lock"),
    pytest.param([1, object()], id="object-in-list"),
    pytest.param((1, [2, {3}]), id="set-in-tuple-in-list"),
    pytest.param({"k": print}, id="builtin-in-dict"),
    pytest.param(complex(1, 2), id="complex"),
    pytest.param(bytearray(b"x"), id="bytearray"),
    pytest.param(StrictDict, id="class"),
]


@pytest.fixture
def sd():
    return StrictDict()


@pytest.fixture
def fresh_id():
    value = next(_ids)
    yield value
    drop_engine(value)


# --------------------------------------------------------------------------- what may be stored

@pytest.mark.parametrize("value", PLAIN, ids=repr)
def test_plain_values_are_stored_and_read_back_equal(sd, value):
    sd["v"] = value
    assert sd["v"] == value
    assert type(sd["v"]) is type(value)


@pytest.mark.parametrize("value", NOT_PLAIN)
def test_non_plain_values_are_refused(sd, value):
    with pytest.raises(InvalidProperty):
        sd["v"] = value
    assert "v" not in sd
    assert len(sd) == 0


@pytest.mark.parametrize("key", [1, None, ("t",), b"bytes", 1.5])
def test_non_str_keys_are_refused(sd, key):
    with pytest.raises(InvalidProperty):
        sd[key] = 1
    assert len(sd) == 0


def test_invalid_property_is_a_type_error(sd):
    with pytest.raises(TypeError):
        sd["f"] = lambda: None


def test_self_referencing_list_is_refused_not_a_crash(sd):
    loop = []
    loop.append(loop)
    with pytest.raises(InvalidProperty):
        sd["loop"] = loop


def test_constructor_checks_its_data():
    assert StrictDict({"a": 1}, b=[2]) == {"a": 1, "b": [2]}
    with pytest.raises(InvalidProperty):
        StrictDict({"a": object()})
    with pytest.raises(InvalidProperty):
        StrictDict(f=lambda: 0)


def test_update_checks_every_value(sd):
    sd.update({"a": 1}, b=2)
    assert sd == {"a": 1, "b": 2}
    with pytest.raises(InvalidProperty):
        sd.update({"c": object()})
    with pytest.raises(InvalidProperty):
        sd.update(d=lambda: 1)
    assert "c" not in sd and "d" not in sd


def test_setdefault_checks_the_default(sd):
    assert sd.setdefault("l", [1]) == [1]
    with pytest.raises(InvalidProperty):
        sd.setdefault("x", object())
    assert "x" not in sd


def test_in_place_union_checks_values(sd):
    sd |= {"ok": 1}
    assert sd["ok"] == 1
    assert isinstance(sd, StrictDict)
    with pytest.raises(InvalidProperty):
        sd |= {"bad": object()}
    assert "bad" not in sd


# --------------------------------------------------------------------------- copy in, copy out

def test_mutating_a_fetched_value_does_not_change_the_stored_one(sd):
    sd["l"] = [1, 2]
    fetched = sd["l"]
    fetched.append(3)
    assert sd["l"] == [1, 2]
    sd["d"] = {"inner": [1]}
    sd["d"]["inner"].append(2)
    assert sd["d"] == {"inner": [1]}


def test_mutating_the_original_after_storing_does_not_change_the_stored_one(sd):
    original = {"inner": [1]}
    sd["d"] = original
    original["inner"].append(2)
    original["new"] = True
    assert sd["d"] == {"inner": [1]}


@pytest.mark.parametrize("read", [
    lambda sd: sd.get("l"),
    lambda sd: sd.copy()["l"],
    lambda sd: dict(sd.items())["l"],
    lambda sd: list(sd.values())[0],
    lambda sd: sd.sub_dict("l")["l"],
    lambda sd: dict(sd)["l"],
    lambda sd: {**sd}["l"],
], ids=["get", "copy", "items", "values", "sub_dict", "dict()", "unpacking"])
def test_every_way_of_reading_returns_copies(sd, read):
    sd["l"] = [1, 2]
    fetched = read(sd)
    assert fetched == [1, 2]
    fetched.append("mutated")
    assert sd["l"] == [1, 2]


def test_copy_is_a_plain_dict(sd):
    sd.update(a=1, b=[2])
    plain = sd.copy()
    assert plain == {"a": 1, "b": [2]}
    plain["c"] = object()  # a plain dict: the StrictDict is unaffected
    assert "c" not in sd


def test_get_default_and_missing_key(sd):
    assert sd.get("missing") is None
    assert sd.get("missing", 5) == 5
    with pytest.raises(KeyError):
        sd["missing"]


def test_sub_dict_unknown_key_raises_key_error(sd):
    sd["a"] = 1
    with pytest.raises(KeyError):
        sd.sub_dict("a", "zz")


def test_pickle_and_deepcopy_keep_strictness(sd):
    sd.update(a=[1], b="x")
    for clone in (pickle.loads(pickle.dumps(sd)), copy.deepcopy(sd)):
        assert isinstance(clone, StrictDict)
        assert clone == {"a": [1], "b": "x"}
        with pytest.raises(InvalidProperty):
            clone["bad"] = object()


# --------------------------------------------------------------------------- modified flag

def test_new_strict_dict_is_not_modified():
    assert StrictDict().modified is False
    assert StrictDict({"a": 1}).modified is False


@pytest.mark.parametrize("change", [
    lambda sd: sd.__setitem__("n", 1),
    lambda sd: sd.__delitem__("a"),
    lambda sd: sd.update(z=1),
    lambda sd: sd.pop("a"),
    lambda sd: sd.popitem(),
    lambda sd: sd.clear(),
    lambda sd: sd.setdefault("new", 1),
], ids=["set", "del", "update", "pop", "popitem", "clear", "setdefault"])
def test_every_change_sets_modified(change):
    sd = StrictDict({"a": [1]})
    sd.modified = False
    change(sd)
    assert sd.modified is True


def test_reading_does_not_set_modified():
    sd = StrictDict({"a": [1]})
    sd.modified = False
    sd["a"], sd.get("a"), sd.copy(), list(sd.items()), "a" in sd  # noqa: B018
    assert sd.modified is False


def test_pop_returns_the_value(sd):
    sd["a"] = [1]
    assert sd.pop("a") == [1]
    assert sd.pop("a", "default") == "default"
    with pytest.raises(KeyError):
        sd.pop("a")


# --------------------------------------------------------------------------- get_engine / EngineAPI

def test_get_engine_creates_one_api_per_id(fresh_id):
    api = get_engine(fresh_id)
    assert api.id == fresh_id
    assert isinstance(api.properties, StrictDict)
    assert len(api.properties) == 0
    assert get_engine(fresh_id) is api
    other = next(_ids)
    try:
        assert get_engine(other) is not api
        assert get_engine(other).properties is not api.properties
    finally:
        drop_engine(other)


def test_engine_api_properties_are_strict(fresh_id):
    props = get_engine(fresh_id).properties
    props["l"] = [1, 2]
    props["l"].append(3)
    assert get_engine(fresh_id).properties["l"] == [1, 2]
    with pytest.raises(InvalidProperty):
        props["f"] = lambda: 1


@pytest.mark.parametrize("name", ["id", "properties", "anything_new"])
def test_engine_api_is_protected(fresh_id, name):
    api = get_engine(fresh_id)
    with pytest.raises(KernelError):
        setattr(api, name, {})
    with pytest.raises(KernelError):
        delattr(api, name)
    assert api.id == fresh_id
    assert isinstance(api.properties, StrictDict)


def test_drop_engine_forgets_the_api(fresh_id):
    api = get_engine(fresh_id)
    api.properties["x"] = 1
    drop_engine(fresh_id)
    again = get_engine(fresh_id)
    assert again is not api
    assert len(again.properties) == 0


def test_drop_unknown_engine_is_harmless():
    drop_engine(next(_ids))
    drop_engine("never-registered")
