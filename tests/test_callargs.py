"""Tier 1: the arguments of a remote call (ipkernel.callargs), and the error a
call written the ipyparallel way (``apply(f, 0)``) gets."""
import pytest

from ipkernel import callargs
from ipkernel.task import MapTask

pytestmark = pytest.mark.tier1


def test_tuples_lists_dicts_and_none_are_taken():
    assert callargs.checked(None, None) == ((), {})
    assert callargs.checked([1, 2], {"a": 3}) == ((1, 2), {"a": 3})
    assert callargs.checked((1,), None) == ((1,), {})


@pytest.mark.parametrize("args, kwargs, words", [
    (0, None, ["args must be a tuple", "not int", "apply(func, (x,))"]),
    ("abc", None, ["not str", "apply(func, (x,))"]),
    ((), [("a", 1)], ["kwargs must be a dict", "not list", "{'name': value}"]),
])
def test_a_mistake_says_how_to_write_the_call(args, kwargs, words):
    with pytest.raises(TypeError) as info:
        callargs.checked(args, kwargs)
    assert all(w in str(info.value) for w in words), str(info.value)


def test_a_map_task_names_itself():
    with pytest.raises(TypeError, match=r"MapTask: args must be a tuple .* MapTask\(func, \(x,\)\)"):
        MapTask(abs, -1)
