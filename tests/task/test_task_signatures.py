"""StringTask and MapTask take IPython 0.10's arguments by position, and any
picklable callable (tier 1: in-process task farm)."""
import functools

import pytest
import pytest_twisted

from ipkernel.error import SerializationError
from ipkernel.task import MapTask, StringTask

from awaiting import within
from callables import Scale, power


async def result(tc, taskid):
    return await within(tc.get_task_result(taskid, block=True))


def test_string_task_takes_0_10_arguments_by_position():
    recovery = StringTask("pass")
    depend = lambda properties: True  # noqa: E731
    task = StringTask("y = x", "y", {"x": 1}, True, True, 3, recovery, depend)
    assert (task.expression, task.pull, task.push) == ("y = x", ("y",), {"x": 1})
    assert (task.clear_before, task.clear_after, task.retries) == (True, True, 3)
    assert task.recovery_task is recovery and task.depend is depend
    assert task.after is None


def test_map_task_takes_0_10_arguments_by_position():
    recovery = MapTask(power, (1,))
    depend = lambda properties: True  # noqa: E731
    task = MapTask(power, (2,), {"n": 3}, True, False, 2, recovery, depend)
    assert (task.args, task.kwargs) == ((2,), {"n": 3})
    assert (task.clear_before, task.clear_after, task.retries) == (True, False, 2)
    assert task.recovery_task is recovery and task.depend is depend


def test_keywords_still_work_and_after_is_keyword_only():
    task = StringTask("pass", retries=1, clear_after=True, after=[0, 1])
    assert task.retries == 1 and task.clear_after and task.after == ("all", [0, 1])
    assert MapTask(power, after=("any", [4])).after == ("any", [4])
    with pytest.raises(TypeError):
        StringTask("pass", None, None, False, False, 0, None, None, [0])
    with pytest.raises(TypeError):
        MapTask(power, None, None, False, False, 0, None, None, [0])
    with pytest.raises(TypeError):
        StringTask("pass", None, None, False, False, -1)   # retries checked by position too


def test_map_task_takes_any_callable_and_refuses_the_rest():
    for func in (functools.partial(power, n=3), Scale(2), Scale(2).times, len, power):
        MapTask(func, (1,))
    with pytest.raises(TypeError, match="callable"):
        MapTask("power")
    import threading
    lock = threading.Lock()
    with pytest.raises(SerializationError):
        MapTask(functools.partial(lambda lock, x: x, lock))   # made now, so it fails now


@pytest_twisted.ensureDeferred
async def test_positional_clear_after_and_retries_run(make_tc):
    tc = make_tc(1)
    # clear_before=False, clear_after=True: the engine is reset after the task
    tid = await tc.run(StringTask("a = 5", "a", None, False, True))
    assert (await result(tc, tid)).ns.a == 5
    after = await tc.run(StringTask("b = 'a' in globals()", "b"))
    assert (await result(tc, after)).ns.b is False
    # retries=2 by position: fails twice, then succeeds
    await tc.run(StringTask("tries = 0"))
    flaky = "tries += 1\nif tries < 3: raise ValueError(tries)"
    tid = await tc.run(StringTask(flaky, "tries", None, False, False, 2))
    assert (await result(tc, tid)).ns.tries == 3


@pytest_twisted.ensureDeferred
async def test_map_tasks_of_partials_bound_methods_and_callable_objects(make_tc):
    tc = make_tc(1)
    assert await result(tc, await tc.run(MapTask(functools.partial(power, n=3), (2,)))) == 8
    assert await result(tc, await tc.run(MapTask(Scale(3).times, (2,)))) == 6
    assert await result(tc, await tc.run(MapTask(Scale(3), (2,)))) == 7
    assert await result(tc, await tc.run(MapTask(max, (2, 9)))) == 9
