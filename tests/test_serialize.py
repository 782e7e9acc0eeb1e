"""Tier 1: ipkernel.serialize -- Serialized/UnSerialized, adapters, frames, errors, caps."""
import pickle
import threading

import pytest
from zope.interface.verify import verifyObject

from ipkernel.error import PayloadTooLarge, SerializationError
from ipkernel.interfaces import ISerialized, IUnSerialized
from ipkernel.serialize import (Serialized, UnSerialized, check_size, dumps, loads, serialize,
                                unserialize)

np = pytest.importorskip("numpy")

pytestmark = pytest.mark.tier1

MODULE_FACTOR = 3


def _scale_by_module_factor(x):
    return x * MODULE_FACTOR


def _make_counter(start):
    state = {"n": start}

    def bump(step=1):
        state["n"] += step
        return state["n"]
    return bump


# --------------------------------------------------------------------------- interfaces and adapters

def test_unserialized_adapts_to_serialized_and_back():
    obj = {"a": 10, "b": [1, 2.5, "three"], "c": (None, True)}
    us = UnSerialized(obj)
    s = ISerialized(us)
    assert isinstance(s, Serialized)
    assert ISerialized.providedBy(s)
    back = IUnSerialized(s)
    assert IUnSerialized.providedBy(back)
    assert back is not us
    assert back.get_object() == obj
    assert back.get_object() is not obj


def test_all_three_provide_their_interfaces():
    us = UnSerialized([1, 2])
    s = serialize([1, 2])
    verifyObject(IUnSerialized, us)
    verifyObject(ISerialized, s)
    verifyObject(IUnSerialized, IUnSerialized(s))
    assert us.get_object() == [1, 2]


def test_ndarray_adapts_through_both_interfaces():
    a = np.arange(6, dtype=np.int32).reshape(2, 3)
    s = ISerialized(UnSerialized(a))
    assert s.get_type_descriptor() == "ndarray"
    rebuilt = IUnSerialized(s).get_object()
    np.testing.assert_array_equal(rebuilt, a)
    assert rebuilt.dtype == a.dtype


# --------------------------------------------------------------------------- pickle descriptor

def test_dict_pickles_with_descriptor_pickle_and_empty_metadata():
    d = {"key": "value", "n": 5, "nested": {"t": (1, 2)}}
    s = serialize(d)
    assert s.get_type_descriptor() == "pickle"
    assert s.get_metadata() == {}
    assert unserialize(s) == d
    again = serialize(unserialize(s))
    assert bytes(again.get_data()) == bytes(s.get_data())
    assert again.get_type_descriptor() == s.get_type_descriptor()
    assert again.get_metadata() == s.get_metadata()


@pytest.mark.parametrize("obj", [10, "hi there", 1.5, None, b"\x00bytes", [1, [2, [3]]],
                                 {"p": (1, 2)}, {1, 2, 3}, complex(1, 2)])
def test_plain_objects_round_trip(obj):
    s = serialize(obj)
    assert s.get_type_descriptor() == "pickle"
    assert unserialize(s) == obj
    assert type(unserialize(s)) is type(obj)


def test_get_buffers_starts_with_data_and_size_counts_all_frames():
    s = serialize({"x": list(range(100))})
    frames = s.get_buffers()
    assert frames[0] is s.get_data()
    total = sum(memoryview(f).nbytes for f in frames)
    assert s.get_data_size(units=1) == total
    assert s.get_data_size() == pytest.approx(total / 1e6)
    frames.append(b"junk")  # a copy of the list: the Serialized is unchanged
    assert len(s.get_buffers()) == len(frames) - 1


def test_serialized_built_from_frames_rebuilds():
    obj = {"rebuilt": [1, 2, 3]}
    s = serialize(obj)
    copy = Serialized([bytes(f) for f in s.get_buffers()], s.get_type_descriptor(), s.get_metadata())
    assert unserialize(copy) == obj


def test_serialized_itself_can_be_pickled_as_opaque_bytes():
    s = serialize({"opaque": 1})
    moved = pickle.loads(pickle.dumps(s))
    assert moved.get_type_descriptor() == "pickle"
    assert unserialize(moved) == {"opaque": 1}


# --------------------------------------------------------------------------- ndarray descriptor

@pytest.mark.parametrize("dtype", ["<f8", "<i4", "|u1", ">i2", "<c16", "|b1"])
def test_ndarray_descriptor_metadata_and_buffer(dtype):
    a = (np.arange(24) % 7).astype(dtype).reshape(2, 3, 4)
    s = serialize(a)
    assert s.get_type_descriptor() == "ndarray"
    md = s.get_metadata()
    assert tuple(md["shape"]) == (2, 3, 4)
    assert md["dtype"] == a.dtype.str
    assert bytes(s.get_data()) == a.tobytes()
    rebuilt = unserialize(Serialized(bytes(s.get_data()), s.get_type_descriptor(), md))
    assert rebuilt.tobytes() == a.tobytes()
    assert rebuilt.dtype == a.dtype
    assert rebuilt.shape == a.shape


def test_rebuilt_array_is_writable_and_independent():
    a = np.linspace(0, 1, 10)
    buf = bytes(serialize(a).get_data())
    s = Serialized(buf, "ndarray", {"shape": (10,), "dtype": a.dtype.str})
    rebuilt = unserialize(s)
    rebuilt[0] = 42.0
    assert rebuilt[0] == 42.0
    assert a[0] == 0.0


def test_ndarray_travels_as_its_buffer_without_pickling():
    a = np.arange(1000, dtype=np.float64)
    s = serialize(a)
    assert len(s.get_buffers()) == 1
    assert s.get_data_size(units=1) == a.nbytes


@pytest.mark.parametrize("make", [
    lambda: np.arange(20).reshape(4, 5)[:, ::2],
    lambda: np.arange(12.0).reshape(3, 4).T,
    lambda: np.asfortranarray(np.arange(12).reshape(3, 4)),
    lambda: np.arange(30)[::-3],
], ids=["strided", "transposed", "fortran", "reversed"])
def test_non_contiguous_arrays_round_trip(make):
    a = make()
    rebuilt = unserialize(serialize(a))
    np.testing.assert_array_equal(rebuilt, a)
    assert rebuilt.shape == a.shape
    assert rebuilt.dtype == a.dtype
    in_dict = unserialize(serialize({"a": a}))["a"]
    np.testing.assert_array_equal(in_dict, a)


def test_empty_array_round_trips():
    a = np.zeros((0, 3), dtype=np.float32)
    rebuilt = unserialize(serialize(a))
    assert rebuilt.shape == (0, 3)
    assert rebuilt.dtype == np.float32


@pytest.mark.parametrize("a", [
    np.array([1, "two", None], dtype=object),
    np.zeros(3, dtype=[("x", "<i4"), ("y", "<f8")]),
], ids=["object", "structured"])
def test_arrays_with_non_plain_dtypes_are_pickled(a):
    s = serialize(a)
    assert s.get_type_descriptor() == "pickle"
    rebuilt = unserialize(s)
    assert rebuilt.dtype == a.dtype
    assert rebuilt.tolist() == a.tolist()


# --------------------------------------------------------------------------- out-of-band buffers

def test_large_array_inside_a_dict_becomes_an_out_of_band_frame():
    big = np.arange(500_000, dtype=np.float64)
    s = serialize({"big": big, "label": "x"})
    assert s.get_type_descriptor() == "pickle"
    frames = s.get_buffers()
    assert len(frames) > 1
    assert memoryview(frames[0]).nbytes < 10_000  # the array is not copied into the pickle
    assert s.get_data_size(units=1) >= big.nbytes
    rebuilt = unserialize(s)
    assert rebuilt["label"] == "x"
    np.testing.assert_array_equal(rebuilt["big"], big)


def test_dumps_loads_with_several_arrays():
    arrays = [np.full(10_000, i, dtype=np.int64) for i in range(3)]
    frames = dumps({"arrays": arrays})
    assert len(frames) == 4
    rebuilt = loads([bytes(f) for f in frames])
    for got, want in zip(rebuilt["arrays"], arrays):
        np.testing.assert_array_equal(got, want)


# --------------------------------------------------------------------------- functions (cloudpickle)

def test_lambda_round_trips():
    f = unserialize(serialize(lambda x, y=2: x * y + 1))
    assert f(3) == 7
    assert f(3, y=10) == 31


def test_closure_with_state_round_trips():
    counter = _make_counter(10)
    counter()
    g = unserialize(serialize(counter))
    assert g() == 12
    assert g(step=5) == 17
    assert counter() == 12  # the original keeps its own state


def test_nested_function_using_module_global_round_trips():
    def outer(x):
        return _scale_by_module_factor(x) + MODULE_FACTOR
    assert unserialize(serialize(outer))(2) == 9


def test_function_defaults_and_kwdefaults_survive():
    def f(a, b=4, *, c=5):
        return (a, b, c)
    g = unserialize(serialize(f))
    assert g(1) == (1, 4, 5)
    assert g(1, c=0) == (1, 4, 0)


# --------------------------------------------------------------------------- errors and caps

def test_unpicklable_object_raises_serialization_error_naming_the_type():
    with pytest.raises(SerializationError) as info:
        serialize(threading.Lock())
    assert "lock" in str(info.value)
    assert "_thread" in str(info.value)


def test_unpicklable_value_inside_a_container_names_the_container():
    with pytest.raises(SerializationError) as info:
        serialize({"gen": (i for i in range(3))})
    assert "generator" in str(info.value)


def test_garbage_frames_raise_serialization_error():
    with pytest.raises(SerializationError):
        unserialize(Serialized([b"certainly not a pickle"], "pickle", {}))


def test_unknown_type_descriptor_raises_serialization_error():
    s = serialize([1, 2])
    with pytest.raises(SerializationError, match="bogus"):
        unserialize(Serialized(s.get_buffers(), "bogus", {}))


def test_check_size_over_the_cap_raises_payload_too_large():
    s = serialize(b"x" * 5000)
    size = s.get_data_size(units=1)
    with pytest.raises(PayloadTooLarge) as info:
        check_size(s, int(size) - 1)
    assert str(int(size)) in str(info.value)


def test_check_size_within_cap_or_uncapped_returns_the_payload():
    s = serialize(b"x" * 5000)
    size = int(s.get_data_size(units=1))
    assert check_size(s, size) is s
    assert check_size(s, None) is s


def test_check_size_counts_out_of_band_frames():
    s = serialize({"a": np.zeros(100_000)})
    assert memoryview(s.get_data()).nbytes < 10_000
    with pytest.raises(PayloadTooLarge):
        check_size(s, 100_000)


def test_importing_ipkernel_does_not_import_numpy():
    import subprocess
    import sys
    code = ("import sys, ipkernel, ipkernel.engine.app, ipkernel.controller.app; "
            "print('numpy' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"  # a process that never touches an array never pays for numpy
