"""IMultiEngine / IFullMultiEngine adapted from a ControllerService.

Tests taking ``me`` / ``make_me`` run twice: on the in-process adapter with
in-process queued engines (``local``, tier 1) and through real Foolscap Tubs
on loopback, as a client of a controller whose engines each have their own
Tub (``foolscap``, tier 2).  Tests that register engines themselves or look
at controller internals stay local.
"""
import io
import time

import numpy
import pytest
import pytest_twisted
from zope.interface.verify import verifyObject

from ipkernel.controller import multiengine
from ipkernel.engine import Interpreter, QueuedEngine, current_request
from ipkernel.error import (Aborted, CompositeError, EngineError, InvalidEngineID,
                            NoEnginesRegistered, QueueCleared)
from ipkernel.interfaces.multiengine import (IEngineMultiplexer, IFullMultiEngine, IMultiEngine,
                                             IMultiEngineCoordinator, IMultiEngineExtras)
from ipkernel.serialize import Serialized, serialize, unserialize

from awaiting import raises, within


def error_types(err):
    return [type(e) for e in err.exceptions]


def labels(err):
    """The ``[id:method]`` prefixes of the engine lines of a CompositeError."""
    return [line.split(":", 2)[0] + ":" + line.split(":", 2)[1]
            for line in str(err).splitlines()[1:] if line.startswith("[")]


# Functions shipped to engines.  ``id`` inside them is the engine's ``id``
# once pushed (the engine namespace becomes their globals).

def triple(x):
    return 3 * x


def whoami():
    return ("engine", id)


def plain_function(*args):
    return len(args)


# --- command lists ----------------------------------------------------------

VALID_COMMANDS = [
    "a = 5",
    "a = 5; b = 10; c = a + b",
    "import math; math.sqrt(2.0) * 3",
    "def summed(n):\n    total = 0\n    for k in range(n):\n        total += k\n    return total\n",
    "if 3 > 2: flag = 'yes'",
    "import time\ntime.sleep(0.01)",
    "from math import cos;\nx = 2.0 * cos(0.5)",
    "s = 1\ns = set()\n   \n\n",
    "items = []\nitems.append(3)",
    "x = 1.5\na = 5; b = 10",
    "x = 1.5\na = 5; b = 10;",
    "print('engine says', 6 * 7)\nimport sys; print('to stderr', file=sys.stderr)\n'shown'",
]

INVALID_COMMANDS = [
    ("1 / 0", ZeroDivisionError),
    ("print(not_defined_anywhere)", NameError),
    ("seq = []; seq[0]", IndexError),
    ("table = {}; table['missing']", KeyError),
    ("assert 1 == 2", AssertionError),
    ("import no_such_module_for_ipkernel_tests", ModuleNotFoundError),
    ("raise Exception('plain exception')", Exception),
]


def call_table(script_path):
    """name -> (args, kwargs) of every targeted method of IFullMultiEngine."""
    return {
        "execute": (("a = 1",), {}),
        "push": (({"a": 1},), {}),
        "pull": (("a",), {}),
        "push_function": (({"f": plain_function},), {}),
        "pull_function": (("f",), {}),
        "apply": ((plain_function,), {}),
        "complete": (("pri",), {}),
        "get_result": ((), {}),
        "reset": ((), {}),
        "keys": ((), {}),
        "kill": ((), {}),
        "interrupt": ((), {}),
        "push_serialized": (({"a": serialize(1)},), {}),
        "pull_serialized": (("a",), {}),
        "clear_queue": ((), {}),
        "queue_status": ((), {}),
        "set_properties": (({"p": 1},), {}),
        "get_properties": ((), {}),
        "del_properties": ((("p",),), {}),
        "has_properties": ((("p",),), {}),
        "clear_properties": ((), {}),
        "scatter": (("a", [1, 2, 3]), {}),
        "gather": (("a",), {}),
        "raw_map": ((plain_function, [[1, 2]]), {}),
        "map": ((plain_function, [1, 2]), {}),
        "zip_pull": ((("a", "b"),), {}),
        "run": ((script_path,), {}),
    }


TARGETED_METHODS = sorted(call_table("unused"))

BAD_TARGETS = [100, -1, [0, 100], (100,), "foo", 1.5, ["a"], (0, "x"), None, {0: 0}]


async def assert_untouched(me, engine_id=0):
    """Engine ``engine_id`` never ran a command: it is alive, its first
    execute gets number 1, and nothing was pushed or set."""
    with pytest.raises(CompositeError) as info:
        await within(me.get_result(targets=engine_id))
    assert error_types(info.value) == [IndexError]
    with pytest.raises(CompositeError) as info:
        await within(me.pull("a", targets=engine_id))
    assert error_types(info.value) == [NameError]
    assert await within(me.get_properties(targets=engine_id)) == [{}]
    result = await within(me.execute("probe = 1", targets=engine_id))
    assert result[0]["number"] == 1


# --- interface -----------------------------------------------------------------

def test_provides_multiengine_interfaces(make_controller):
    controller = make_controller(1)
    me = IMultiEngine(controller)
    assert verifyObject(IEngineMultiplexer, me)
    assert verifyObject(IMultiEngine, me)
    full = IFullMultiEngine(controller)
    assert verifyObject(IMultiEngineCoordinator, full)
    assert verifyObject(IMultiEngineExtras, full)
    assert verifyObject(IFullMultiEngine, full)


# --- targets ----------------------------------------------------------------------

@pytest_twisted.ensureDeferred
async def test_every_method_with_target_zero(make_me):
    me = await make_me(1)
    result = await within(me.execute("a = 5", targets=0))
    assert len(result) == 1
    assert (result[0]["number"], result[0]["id"]) == (1, 0)
    assert await within(me.push({"b": 6, "alpha_one": 1, "alpha_two": 2}, targets=0)) == [None]
    assert await within(me.pull(("a", "b"), targets=0)) == [[5, 6]]
    assert await within(me.push_function({"triple": triple}, targets=0)) == [None]
    functions = await within(me.pull_function("triple", targets=0))
    assert len(functions) == 1 and functions[0](4) == 12
    assert await within(me.apply(lambda k: a * k, (2,), targets=0)) == [10]  # noqa: F821
    assert await within(me.complete("alpha_", targets=0)) == [["alpha_one", "alpha_two"]]
    latest = await within(me.get_result(targets=0))
    assert latest[0]["number"] == 1 and latest[0]["input"]["raw"] == "a = 5"
    keys = await within(me.keys(targets=0))
    assert {"a", "b", "triple", "id"} <= set(keys[0])
    assert await within(me.push_serialized({"c": serialize([1, 2])}, targets=0)) == [None]
    pulled = await within(me.pull_serialized("c", targets=0))
    assert unserialize(pulled[0]) == [1, 2]
    assert await within(me.clear_queue(targets=0)) == [None]
    assert await within(me.queue_status(targets=0)) == [(0, {"queue": [], "pending": "None"})]
    assert await within(me.set_properties({"p": 1, "q": "two"}, targets=0)) == [None]
    assert await within(me.get_properties(targets=0)) == [{"p": 1, "q": "two"}]
    assert await within(me.has_properties(("p", "z"), targets=0)) == [[True, False]]
    assert await within(me.del_properties(("p",), targets=0)) == [None]
    assert await within(me.get_properties(targets=0)) == [{"q": "two"}]
    assert await within(me.clear_properties(targets=0)) == [None]
    assert await within(me.get_properties(targets=0)) == [{}]
    assert await within(me.interrupt(targets=0)) == [False]
    assert await within(me.scatter("sc", [1, 2], targets=0)) == [None]
    assert await within(me.gather("sc", targets=0)) == [1, 2]
    assert await within(me.map(triple, [1, 2], targets=0)) == [3, 6]
    assert await within(me.get_ids()) == [0]
    assert await within(me.reset(targets=0)) == [None]
    with pytest.raises(CompositeError) as info:
        await within(me.pull("a", targets=0))
    assert error_types(info.value) == [NameError]
    assert await within(me.kill(targets=0)) == [None]


@pytest.mark.parametrize("method", TARGETED_METHODS)
@pytest_twisted.ensureDeferred
async def test_bad_targets_fail_with_invalid_engine_id(make_me, script, method):
    me = await make_me(2)
    args, kwargs = call_table(script("a = 1\n"))[method]
    for targets in BAD_TARGETS:
        d = getattr(me, method)(*args, targets=targets, **kwargs)
        with pytest.raises(InvalidEngineID):
            await within(d)
    await assert_untouched(me, 0)
    await assert_untouched(me, 1)


@pytest.mark.parametrize("method", TARGETED_METHODS)
@pytest_twisted.ensureDeferred
async def test_no_engines_with_all_fails(make_me, script, method):
    me = await make_me(0)
    args, kwargs = call_table(script("a = 1\n"))[method]
    with pytest.raises(NoEnginesRegistered):
        await within(getattr(me, method)(*args, **kwargs))
    with pytest.raises(NoEnginesRegistered):
        await within(getattr(me, method)(*args, targets="all", **kwargs))


@pytest_twisted.ensureDeferred
async def test_get_ids_without_engines(make_me):
    me = await make_me(0)
    assert await within(me.get_ids()) == []


@pytest_twisted.ensureDeferred
async def test_target_list_order(me):
    results = await within(me.execute("mark = id", targets=[2, 0]))
    assert [r["id"] for r in results] == [2, 0]
    assert await within(me.pull("id", targets=(3, 1, 0))) == [3, 1, 0]
    assert await within(me.pull("mark", targets=[0, 2])) == [0, 2]
    assert await within(me.pull("id")) == [0, 1, 2, 3]


@pytest_twisted.ensureDeferred
async def test_duplicate_targets_are_refused_and_nothing_runs(me):
    for call in (lambda: me.execute("n = 1", targets=[0, 0]),
                 lambda: me.push({"n": 5}, targets=(1, 2, 1)),
                 lambda: me.pull("id", targets=[3, 3])):
        error = await raises(InvalidEngineID, call())
        assert "more than once" in str(error), error
    await within(me.execute("seen = 'n' in globals()", targets=[0, 1, 2]))
    assert await within(me.pull("seen", targets=[0, 1, 2])) == [False, False, False]


@pytest_twisted.ensureDeferred
async def test_all_targets_follow_increasing_ids(make_controller, make_engine):
    controller = make_controller(0)
    for wanted in (5, 2, 9):
        controller.register_engine(QueuedEngine(make_engine()), id=wanted)
    me = IMultiEngine(controller)
    assert await within(me.get_ids()) == [2, 5, 9]
    assert await within(me.pull("id")) == [2, 5, 9]
    assert [r["id"] for r in await within(me.execute("z = 0"))] == [2, 5, 9]


@pytest_twisted.ensureDeferred
async def test_empty_target_list_gives_empty_results(me):
    assert await within(me.execute("a = 1", targets=[])) == []
    assert await within(me.push({"a": 1}, targets=[])) == []
    assert await within(me.pull("id", targets=())) == []
    assert await within(me.keys(targets=[])) == []
    assert await within(me.queue_status(targets=[])) == []
    assert await within(me.apply(plain_function, targets=[])) == []
    with pytest.raises(CompositeError) as info:
        await within(me.pull("a"))
    assert error_types(info.value) == [NameError] * 4


# --- execute ------------------------------------------------------------------------

@pytest.mark.parametrize("command", VALID_COMMANDS, ids=range(len(VALID_COMMANDS)))
@pytest_twisted.ensureDeferred
async def test_valid_command_on_four_engines_matches_local_interpreter(me, command):
    local = Interpreter().execute(command)
    results = await within(me.execute(command))
    assert len(results) == 4
    for engine_id, result in enumerate(results):
        assert result == dict(local, id=engine_id)


def test_valid_command_list_covers_output_and_display():
    # guards the command list itself: the comparison above must see
    # stdout, stderr and display values, not only empty dicts
    shell = Interpreter()
    outcomes = [shell.execute(c) for c in VALID_COMMANDS]
    assert any("display" in r for r in outcomes)
    assert any("stdout" in r for r in outcomes)
    assert any("stderr" in r for r in outcomes)


@pytest.mark.parametrize("command,expected", INVALID_COMMANDS,
                         ids=[e.__name__ for _, e in INVALID_COMMANDS])
@pytest_twisted.ensureDeferred
async def test_invalid_command_on_four_engines(me, command, expected):
    with pytest.raises(CompositeError) as info:
        await within(me.execute(command))
    err = info.value
    assert error_types(err) == [expected] * 4
    assert type(err.exceptions[0]) is expected

    text = str(err).splitlines()
    assert text[0] == "one or more exceptions from call to method: execute"
    assert labels(err) == [f"[{i}:execute]" for i in range(4)]
    for i, line in enumerate(text[1:]):
        assert line.startswith(f"[{i}:execute]: {expected.__name__}")

    out = io.StringIO()
    err.print_tracebacks(file=out)
    printed = out.getvalue()
    for i in range(4):
        assert f"[{i}:execute]" in printed
    assert expected.__name__ in printed

    one = io.StringIO()
    err.print_tracebacks(2, file=one)
    assert "[2:execute]" in one.getvalue() and "[0:execute]" not in one.getvalue()

    with pytest.raises(expected):
        err.raise_exception()
    with pytest.raises(expected):
        err.raise_exception(3)
    with pytest.raises(IndexError):
        err.raise_exception(4)

    # the failed command consumed number 1 and is retrievable with its traceback
    failed = await within(me.get_result(1))
    assert [r["number"] for r in failed] == [1] * 4
    assert all("traceback" in r for r in failed)


@pytest_twisted.ensureDeferred
async def test_zero_division_line_format(me):
    with pytest.raises(CompositeError) as info:
        await within(me.execute("1/0", targets=[3, 1]))
    assert str(info.value).splitlines()[1:] == [
        "[3:execute]: ZeroDivisionError: division by zero",
        "[1:execute]: ZeroDivisionError: division by zero",
    ]


@pytest_twisted.ensureDeferred
async def test_failure_clears_that_engines_queue_and_call_waits_for_all(me, gates):
    gate = gates.new()
    # engine 0 fails at once; engines 1-3 wait at the gate, then fail too
    failing = me.execute(f"if id != 0:\n    {gate.code}\n1 / 0")
    queued_behind = me.execute("after = 1", targets=0)
    other_engine = me.execute("after = 2", targets=1)

    with pytest.raises(CompositeError) as info:
        await within(queued_behind)
    assert error_types(info.value) == [QueueCleared]
    # engine 0 has failed, but the call still waits for the other targets
    assert not failing.called
    await gate.wait_arrivals(3)
    assert not failing.called
    gate.open()

    with pytest.raises(CompositeError) as info:
        await within(failing)
    assert error_types(info.value) == [ZeroDivisionError] * 4
    assert labels(info.value) == [f"[{i}:execute]" for i in range(4)]
    # engine 1's queued command was cleared too when its own command failed
    with pytest.raises(CompositeError) as info:
        await within(other_engine)
    assert error_types(info.value) == [QueueCleared]
    with pytest.raises(CompositeError) as info:
        await within(me.pull("after", targets=[0, 1]))
    assert error_types(info.value) == [NameError, NameError]
    # the engines keep working afterwards
    assert await within(me.pull("id")) == [0, 1, 2, 3]


@pytest_twisted.ensureDeferred
async def test_execute_results_carry_engine_ids(me):
    results = await within(me.execute("value = id * 10\nvalue"))
    assert [r["id"] for r in results] == [0, 1, 2, 3]
    assert [r["display"]["repr"] for r in results] == ["0", "10", "20", "30"]


# --- push / pull ---------------------------------------------------------------------

@pytest_twisted.ensureDeferred
async def test_push_pull_shapes(me):
    assert await within(me.push({"a": 10, "b": 20})) == [None] * 4
    assert await within(me.pull("a")) == [10] * 4
    assert await within(me.pull(("a", "b"))) == [[10, 20]] * 4
    assert await within(me.pull(["b", "a"])) == [[20, 10]] * 4
    assert await within(me.pull(["a"])) == [[10]] * 4
    assert await within(me.pull("a", targets=0)) == [10]
    assert await within(me.pull(("a", "b"), targets=0)) == [[10, 20]]
    assert await within(me.pull(("a", "b"), targets=[3])) == [[10, 20]]


@pytest_twisted.ensureDeferred
async def test_push_pull_none_and_nested_values(me):
    nested = {"k": (1, None, [2.5, "x"]), "s": {1, 2}, "b": b"raw"}
    await within(me.push({"nothing": None, "nested": nested}))
    assert await within(me.pull("nothing")) == [None] * 4
    assert await within(me.pull(("nothing", "nested"))) == [[None, nested]] * 4


@pytest_twisted.ensureDeferred
async def test_push_to_some_engines_pull_from_all(me):
    await within(me.push({"only": "here"}, targets=[1, 3]))
    assert await within(me.pull("only", targets=[3, 1])) == ["here", "here"]
    with pytest.raises(CompositeError) as info:
        await within(me.pull("only"))
    assert error_types(info.value) == [NameError, NameError]
    assert labels(info.value) == ["[0:pull]", "[2:pull]"]


@pytest_twisted.ensureDeferred
async def test_pull_after_reset_fails(me):
    await within(me.push({"a": 1}))
    assert await within(me.reset()) == [None] * 4
    with pytest.raises(CompositeError) as info:
        await within(me.pull("a"))
    assert error_types(info.value) == [NameError] * 4
    # reset re-seeds the id and restarts numbering
    assert await within(me.pull("id")) == [0, 1, 2, 3]
    assert [r["number"] for r in await within(me.execute("a = 2"))] == [1] * 4


@pytest_twisted.ensureDeferred
async def test_push_serialized_pull_serialized(me):
    array = numpy.arange(6.0)
    namespace = {"a": serialize(10), "arr": serialize(array), "s": serialize("text")}
    assert await within(me.push_serialized(namespace)) == [None] * 4
    assert await within(me.pull("a")) == [10] * 4
    for pulled in await within(me.pull("arr")):
        assert isinstance(pulled, numpy.ndarray) and numpy.array_equal(pulled, array)

    one = await within(me.pull_serialized("a", targets=0))
    assert len(one) == 1 and isinstance(one[0], Serialized)
    assert unserialize(one[0]) == 10

    several = await within(me.pull_serialized(("a", "s")))
    assert len(several) == 4
    for per_engine in several:
        assert len(per_engine) == 2
        assert all(isinstance(s, Serialized) for s in per_engine)
        assert [unserialize(s) for s in per_engine] == [10, "text"]

    arrays = await within(me.pull_serialized("arr", targets=[2]))
    assert numpy.array_equal(unserialize(arrays[0]), array)

    await within(me.reset())
    with pytest.raises(CompositeError) as info:
        await within(me.pull_serialized("a"))
    assert error_types(info.value) == [NameError] * 4


# --- get_result ----------------------------------------------------------------------

@pytest_twisted.ensureDeferred
async def test_get_result_after_execute(me):
    first = await within(me.execute("x = id * 2"))
    second = await within(me.execute("x + 1"))
    assert await within(me.get_result()) == second
    assert await within(me.get_result(2)) == second
    assert await within(me.get_result(1)) == first
    assert [r["display"]["repr"] for r in second] == ["1", "3", "5", "7"]
    assert await within(me.get_result(1, targets=[2])) == [first[2]]
    with pytest.raises(CompositeError) as info:
        await within(me.get_result(10))
    assert error_types(info.value) == [IndexError] * 4


@pytest_twisted.ensureDeferred
async def test_get_result_matches_local_interpreter(me):
    shell = Interpreter()
    for command in VALID_COMMANDS[:4]:
        expected = shell.execute(command)
        await within(me.execute(command))
        latest = await within(me.get_result())
        assert latest == [dict(expected, id=i) for i in range(4)]


@pytest_twisted.ensureDeferred
async def test_get_result_on_fresh_engines_fails(me):
    with pytest.raises(CompositeError) as info:
        await within(me.get_result())
    assert error_types(info.value) == [IndexError] * 4
    with pytest.raises(CompositeError) as info:
        await within(me.get_result(10, targets=1))
    assert error_types(info.value) == [IndexError]


# --- functions ----------------------------------------------------------------------

@pytest_twisted.ensureDeferred
async def test_push_function_and_pull_function(me):
    assert await within(me.push_function({"triple": triple, "whoami": whoami})) == [None] * 4
    await within(me.execute("tripled = triple(id)\nme = whoami()"))
    assert await within(me.pull("tripled")) == [0, 3, 6, 9]
    assert await within(me.pull("me")) == [("engine", i) for i in range(4)]

    pulled = await within(me.pull_function("triple"))
    assert len(pulled) == 4
    assert [f(5) for f in pulled] == [15] * 4

    pairs = await within(me.pull_function(("triple", "whoami"), targets=0))
    assert len(pairs) == 1 and len(pairs[0]) == 2
    assert pairs[0][0](2) == 6 and callable(pairs[0][1])

    with pytest.raises(CompositeError) as info:
        await within(me.push_function({"bad": 5}, targets=[0, 1]))
    assert error_types(info.value) == [TypeError, TypeError]


@pytest_twisted.ensureDeferred
async def test_apply_on_targets(me):
    result = await within(me.apply(lambda base, scale=1: base + id * scale,  # noqa: F821
                                   (100,), {"scale": 10}, targets=[1, 3]))
    assert result == [110, 130]
    assert await within(me.apply(plain_function, (1, 2, 3))) == [3] * 4
    with pytest.raises(CompositeError) as info:
        await within(me.apply(lambda: 1 / 0, targets=[2]))
    assert error_types(info.value) == [ZeroDivisionError]


# --- ids, queues, properties -----------------------------------------------------------

@pytest_twisted.ensureDeferred
async def test_get_ids(make_controller, make_engine):
    controller = make_controller(1)
    me = IMultiEngine(controller)
    assert await within(me.get_ids()) == [0]
    for wanted in (3, 1, 2):
        controller.register_engine(QueuedEngine(make_engine()), id=wanted)
    assert await within(me.get_ids()) == [0, 1, 2, 3]
    controller.unregister_engine(1)
    assert await within(me.get_ids()) == [0, 2, 3]


@pytest_twisted.ensureDeferred
async def test_clear_queue_and_queue_status(me):
    assert await within(me.clear_queue()) == [None] * 4
    status = await within(me.queue_status(targets=0))
    assert isinstance(status[0], tuple)
    assert status[0] == (0, {"queue": [], "pending": "None"})
    everything = await within(me.queue_status())
    assert [entry[0] for entry in everything] == [0, 1, 2, 3]
    assert all(set(entry[1]) == {"queue", "pending"} for entry in everything)


@pytest_twisted.ensureDeferred
async def test_clear_queue_fails_waiting_commands(me, gates):
    gate = gates.new()
    running = me.execute(gate.code, targets=0)
    waiting = me.execute("waiting = 1", targets=0)
    await gate.wait_arrivals(1)

    status = await within(me.queue_status(targets=0))
    engine_id, info = status[0]
    assert engine_id == 0
    assert info["queue"] == ["execute('waiting = 1')"]
    assert info["pending"].startswith("execute(")

    assert await within(me.clear_queue(targets=0)) == [None]
    with pytest.raises(CompositeError) as err:
        await within(waiting)
    assert error_types(err.value) == [QueueCleared]
    # the running command was left alone
    assert not running.called
    gate.open()
    assert (await within(running))[0]["number"] == 1
    with pytest.raises(CompositeError):
        await within(me.pull("waiting", targets=0))


@pytest_twisted.ensureDeferred
async def test_properties_across_four_engines(me):
    props = {"a": 1, "b": [1, 2], "c": {"deep": (1, "x")}}
    assert await within(me.set_properties(props)) == [None] * 4
    assert await within(me.get_properties()) == [props] * 4
    assert await within(me.get_properties(("a",))) == [{"a": 1}] * 4
    assert await within(me.has_properties(("a", "zz", "c"))) == [[True, False, True]] * 4
    assert await within(me.del_properties(("a", "c"))) == [None] * 4
    assert await within(me.get_properties()) == [{"b": [1, 2]}] * 4
    with pytest.raises(CompositeError) as info:
        await within(me.get_properties(("a",)))
    assert error_types(info.value) == [KeyError] * 4
    assert await within(me.clear_properties()) == [None] * 4
    assert await within(me.get_properties()) == [{}] * 4
    await within(me.set_properties({"only": True}, targets=[2]))
    assert await within(me.has_properties(("only",))) == [[False], [False], [True], [False]]


# --- kill, interrupt -----------------------------------------------------------------------

@pytest_twisted.ensureDeferred
async def test_kill_with_controller(make_controller, make_engine):
    hook_calls = []
    controller = make_controller(0, shutdown_hook=lambda *a, **kw: hook_calls.append(a))
    engines = [make_engine() for _ in range(4)]
    for engine in engines:
        controller.register_engine(QueuedEngine(engine))
    me = IMultiEngine(controller)
    # targets is ignored: everything stops
    assert await within(me.kill(controller=True, targets=[1])) is None
    assert len(hook_calls) == 1
    for engine in engines:
        with pytest.raises(EngineError):
            await within(engine.execute("a = 1"))


@pytest_twisted.ensureDeferred
async def test_kill_some_engines(make_controller, make_engine):
    hook_calls = []
    controller = make_controller(0, shutdown_hook=lambda *a, **kw: hook_calls.append(a))
    engines = [make_engine() for _ in range(3)]
    for engine in engines:
        controller.register_engine(QueuedEngine(engine))
    me = IMultiEngine(controller)
    assert await within(me.kill(targets=[1])) == [None]
    with pytest.raises(EngineError):
        await within(engines[1].execute("a = 1"))
    assert await within(me.pull("id", targets=[0, 2])) == [0, 2]
    assert hook_calls == []


@pytest_twisted.ensureDeferred
async def test_interrupt(me, gates):
    gate = gates.new()
    busy = me.execute(
        f"import time\n{gate.notify_code}\nstart = time.monotonic()\n"
        "while time.monotonic() - start < 15:\n    pass\n", targets=1)
    await gate.wait_arrivals(1)
    assert await within(me.interrupt()) == [False, True, False, False]
    with pytest.raises(CompositeError) as info:
        await within(busy)
    assert error_types(info.value) == [KeyboardInterrupt]
    # the engine carries on
    assert await within(me.pull("id", targets=1)) == [1]


# --- abort of a request ------------------------------------------------------------------------

@pytest_twisted.ensureDeferred
async def test_abort_request_removes_waiting_commands(controller4, gates):
    # abort_request and current_request are controller internals: local only
    me = IMultiEngine(controller4)
    gate = gates.new()
    running = me.execute(gate.code, targets=0)
    token = current_request.set("request-A")
    try:
        doomed = me.execute("doomed = 1", targets=[0])
    finally:
        current_request.reset(token)
    kept = me.execute("kept = 1", targets=0)
    await gate.wait_arrivals(1)

    assert me.abort_request("request-A") == 1
    with pytest.raises(CompositeError) as info:
        await within(doomed)
    assert error_types(info.value) == [Aborted]

    # the aborted request cannot submit more work until it is forgotten
    token = current_request.set("request-A")
    try:
        late = me.execute("late = 1", targets=0)
    finally:
        current_request.reset(token)
    with pytest.raises(CompositeError) as info:
        await within(late)
    assert error_types(info.value) == [Aborted]

    gate.open()
    await within(running)
    await within(kept)
    assert await within(me.pull("kept", targets=0)) == [1]
    with pytest.raises(CompositeError):
        await within(me.pull("doomed", targets=0))
    me.forget_request("request-A")
    token = current_request.set("request-A")
    try:
        again = me.execute("again = 1", targets=0)
    finally:
        current_request.reset(token)
    assert (await within(again))[0]["id"] == 0


# --- scatter / gather -------------------------------------------------------------------------

@pytest_twisted.ensureDeferred
async def test_scatter_gather_blocks_of_four(me):
    assert await within(me.scatter("a", range(16))) == [None] * 4
    for engine_id in range(4):
        part = (await within(me.pull("a", targets=engine_id)))[0]
        assert list(part) == list(range(4 * engine_id, 4 * engine_id + 4))
    gathered = await within(me.gather("a"))
    assert gathered == list(range(16))


@pytest_twisted.ensureDeferred
async def test_scatter_uneven_block_sizes(me):
    await within(me.scatter("a", list(range(10))))
    parts = await within(me.pull("a"))
    assert [list(p) for p in parts] == [[0, 1, 2], [3, 4, 5], [6, 7], [8, 9]]
    assert await within(me.gather("a")) == list(range(10))


@pytest_twisted.ensureDeferred
async def test_scatter_round_robin(me):
    await within(me.scatter("a", list(range(10)), dist="r"))
    parts = await within(me.pull("a"))
    assert [list(p) for p in parts] == [[0, 4, 8], [1, 5, 9], [2, 6], [3, 7]]
    assert await within(me.gather("a", dist="r")) == list(range(10))


@pytest_twisted.ensureDeferred
async def test_scatter_on_target_subset(me):
    await within(me.scatter("a", list(range(6)), targets=[3, 1]))
    assert [list(p) for p in await within(me.pull("a", targets=[3, 1]))] == [[0, 1, 2], [3, 4, 5]]
    with pytest.raises(CompositeError):
        await within(me.pull("a", targets=0))
    assert await within(me.gather("a", targets=[3, 1])) == list(range(6))


@pytest_twisted.ensureDeferred
async def test_scatter_fewer_items_than_engines(me):
    await within(me.scatter("a", [7, 8]))
    parts = await within(me.pull("a"))
    assert [list(p) for p in parts] == [[7], [8], [], []]
    assert await within(me.gather("a")) == [7, 8]
    assert await within(me.raw_map(triple, [[7, 8]])) == [21, 24]
    assert await within(me.map(triple, [7, 8], dist="r")) == [21, 24]


@pytest_twisted.ensureDeferred
async def test_scatter_flatten(me):
    await within(me.scatter("a", list(range(4)), flatten=True))
    assert await within(me.pull("a")) == [0, 1, 2, 3]
    await within(me.scatter("b", list(range(6)), flatten=True))
    assert await within(me.pull("b")) == [[0, 1], [2, 3], 4, 5]
    await within(me.scatter("c", list(range(4)), flatten=False))
    assert await within(me.pull("c")) == [[0], [1], [2], [3]]


@pytest_twisted.ensureDeferred
async def test_scatter_gather_numpy(me):
    array = numpy.arange(16)
    await within(me.scatter("a", array))
    parts = await within(me.pull("a"))
    for engine_id, part in enumerate(parts):
        assert isinstance(part, numpy.ndarray)
        assert numpy.array_equal(part, array[4 * engine_id:4 * engine_id + 4])
    gathered = await within(me.gather("a"))
    assert isinstance(gathered, numpy.ndarray)
    assert numpy.array_equal(gathered, array)


@pytest_twisted.ensureDeferred
async def test_scatter_gather_str(me):
    await within(me.scatter("text", "abcdefghij"))
    assert await within(me.pull("text")) == ["abc", "def", "gh", "ij"]
    assert await within(me.gather("text")) == "abcdefghij"


@pytest_twisted.ensureDeferred
async def test_gather_of_undefined_fails(me):
    with pytest.raises(CompositeError) as info:
        await within(me.gather("never_defined"))
    assert error_types(info.value) == [NameError] * 4


@pytest_twisted.ensureDeferred
async def test_scatter_unknown_distribution(me):
    with pytest.raises(ValueError):
        await within(me.scatter("a", [1, 2, 3], dist="zigzag"))
    with pytest.raises(CompositeError):
        await within(me.pull("a"))


# --- map ----------------------------------------------------------------------------------------

@pytest_twisted.ensureDeferred
async def test_map_squares(me):
    expected = [x ** 2 for x in range(16)]
    assert await within(me.map(lambda x: x ** 2, range(16))) == expected
    assert await within(me.raw_map(lambda x: x ** 2, [range(16)])) == expected
    assert await within(me.map(lambda x: x ** 2, list(range(16)), dist="r")) == expected
    assert await within(me.map(lambda x: x ** 2, range(10), dist="r")) == expected[:10]


@pytest_twisted.ensureDeferred
async def test_map_closure_and_several_sequences(me):
    offset = 1000

    def shifted(x):
        return x + offset

    assert await within(me.map(shifted, range(9))) == [x + 1000 for x in range(9)]
    assert await within(me.map(lambda x, y: x * y, range(10), range(10, 20))) == \
        [x * y for x, y in zip(range(10), range(10, 20))]
    assert await within(me.raw_map(pow, [[2, 3, 4], [3, 2, 1]])) == [8, 9, 4]
    assert await within(me.map(triple, range(5), targets=[2])) == [0, 3, 6, 9, 12]


@pytest_twisted.ensureDeferred
async def test_map_argument_errors(me):
    with pytest.raises(ValueError):
        await within(me.map(lambda x, y: x + y, range(3), range(4)))
    with pytest.raises(ValueError):
        await within(me.raw_map(lambda x, y: x + y, [range(3), range(4)]))
    with pytest.raises(TypeError):
        await within(me.raw_map(triple, 5))
    with pytest.raises(TypeError):
        await within(me.raw_map(triple, [1, 2]))
    with pytest.raises(TypeError):
        await within(me.map(triple, 5))
    # nothing reached the engines
    with pytest.raises(CompositeError) as info:
        await within(me.get_result())
    assert error_types(info.value) == [IndexError] * 4


@pytest_twisted.ensureDeferred
async def test_map_by_name_of_engine_function(me):
    await within(me.execute("def tagged(x):\n    return (id, x * x)\n"))
    result = await within(me.map("tagged", range(8)))
    assert result == [(0, 0), (0, 1), (1, 4), (1, 9), (2, 16), (2, 25), (3, 36), (3, 49)]


@pytest_twisted.ensureDeferred
async def test_map_failure(me):
    with pytest.raises(CompositeError) as info:
        await within(me.map(lambda x: x / 0, range(8)))
    assert ZeroDivisionError in error_types(info.value)
    assert set(error_types(info.value)) == {ZeroDivisionError}


# --- zip_pull, run -----------------------------------------------------------------------------------

@pytest_twisted.ensureDeferred
async def test_zip_pull(me):
    await within(me.execute("a = id\nb = id * 10"))
    result = await within(me.zip_pull(("a", "b")))
    assert list(result) == [(0, 1, 2, 3), (0, 10, 20, 30)]
    assert list(await within(me.zip_pull(("b", "a"), targets=[3, 1]))) == [(30, 10), (3, 1)]
    assert list(await within(me.zip_pull("a"))) == [0, 1, 2, 3]
    assert list(await within(me.zip_pull(("a", "b"), targets=2))) == [2, 20]
    assert await within(me.zip_pull("b", targets=2)) == 20


@pytest_twisted.ensureDeferred
async def test_run_file(me, script):
    await within(me.run(script("a = 10\nb = 30\n")))
    assert await within(me.pull(("a", "b"))) == [[10, 30]] * 4
    await within(me.run(script("c = id + a\n"), targets=[1, 2]))
    assert await within(me.pull("c", targets=[1, 2])) == [11, 12]
    with pytest.raises(CompositeError):
        await within(me.pull("c", targets=0))


@pytest_twisted.ensureDeferred
async def test_run_file_with_syntax_error_touches_no_engine(me, script):
    first = await within(me.execute("x = 1"))
    with pytest.raises(SyntaxError):
        await within(me.run(script("a = 10\nb = = 30\n")))
    assert await within(me.get_result()) == first
    with pytest.raises(CompositeError):
        await within(me.pull("a"))


@pytest_twisted.ensureDeferred
async def test_run_missing_file(me, tmp_path):
    with pytest.raises(OSError):
        await within(me.run(str(tmp_path / "does_not_exist.py")))


# --- engines lost during a call: reported, the others' results kept (issue 13) ---


@pytest_twisted.ensureDeferred
async def test_a_composite_error_keeps_the_healthy_engines_results(me):
    await within(me.execute("here = id * 10", targets=[0, 2]))
    with pytest.raises(CompositeError) as info:
        await within(me.pull("here", targets=[0, 1, 2]))
    err = info.value
    assert err.engine_ids == [0, 1, 2]
    assert err.failed == [1]
    assert err.results[0] == 0 and err.results[2] == 20
    assert isinstance(err.results[1], NameError)
    assert err.successes == {0: 0, 2: 20}
    assert error_types(err) == [NameError]


@pytest_twisted.ensureDeferred
async def test_a_composite_error_of_an_apply_keeps_the_other_results(me):
    with pytest.raises(CompositeError) as info:
        await within(me.apply(lambda: 1 / (id - 3), targets="all"))
    err = info.value
    assert err.engine_ids == [0, 1, 2, 3] and err.failed == [3]
    assert err.successes == {0: -1 / 3, 1: -1 / 2, 2: -1.0}


@pytest_twisted.ensureDeferred
async def test_an_engine_lost_while_a_call_to_all_was_on_its_way_is_reported(make_controller):
    controller = make_controller(3)
    me = IFullMultiEngine(controller)
    await within(me.execute("v = id + 100"))
    token = multiengine.call_started.set(time.monotonic())
    try:
        controller.unregister_engine(1)   # after the call began, before it is fanned out
        d = me.pull("v")
    finally:
        multiengine.call_started.reset(token)
    with pytest.raises(CompositeError) as info:
        await within(d)
    err = info.value
    assert err.engine_ids == [0, 1, 2] and err.failed == [1]
    assert err.successes == {0: 100, 2: 102}
    (lost,) = err.exceptions
    assert isinstance(lost, EngineError)
    assert "engine 1 was lost while this pull to 'all' was on its way" in str(lost)
    assert "[1:pull]" in str(err)
    # a call that began after the loss is not told about it; neither is kill
    assert await within(me.pull("v")) == [100, 102]
    token = multiengine.call_started.set(time.monotonic() - 60)
    try:
        d = me.kill(targets="all")
    finally:
        multiengine.call_started.reset(token)
    assert await within(d) == [None, None]


@pytest_twisted.ensureDeferred
async def test_an_engine_lost_before_the_call_began_is_not_a_target(make_controller):
    controller = make_controller(2)
    me = IFullMultiEngine(controller)
    controller.unregister_engine(0)
    token = multiengine.call_started.set(time.monotonic())
    try:
        d = me.execute("a = 1")
    finally:
        multiengine.call_started.reset(token)
    assert len(await within(d)) == 1


def test_the_lost_engines_remembered_are_bounded(make_controller, monkeypatch):
    controller = make_controller(0)
    me = IFullMultiEngine(controller)
    monkeypatch.setattr(multiengine, "LOST_KEPT", 3)
    for i in range(10):
        me._engine_lost(i)
    assert list(me._lost) == [7, 8, 9]


@pytest_twisted.ensureDeferred
async def test_a_failed_map_keeps_the_other_engines_parts(me):
    with pytest.raises(CompositeError) as info:
        await within(me.map(lambda x: 1 / x, [1, 0, 2, 4]))
    err = info.value
    assert err.engine_ids == [0, 1, 2, 3] and err.failed == [1]
    assert error_types(err) == [ZeroDivisionError]
    assert err.successes == {0: [1.0], 2: [0.5], 3: [0.25]}


@pytest_twisted.ensureDeferred
async def test_a_failed_gather_keeps_the_parts_that_came(me):
    await within(me.scatter("part", list(range(6)), targets=[0, 2]))
    with pytest.raises(CompositeError) as info:
        await within(me.gather("part", targets=[0, 1, 2]))
    err = info.value
    assert err.engine_ids == [0, 1, 2] and err.failed == [1]
    assert error_types(err) == [NameError]
    assert err.successes == {0: [0, 1, 2], 2: [3, 4, 5]}


@pytest_twisted.ensureDeferred
async def test_an_engine_registered_after_a_call_to_all_began_is_not_one_of_its_targets(
        make_controller, make_engine):
    # its bulk data went to the engines there were then: the newcomer would
    # wait for data that never comes
    controller = make_controller(2)
    me = IFullMultiEngine(controller)
    token = multiengine.call_started.set(time.monotonic())
    try:
        controller.register_engine(QueuedEngine(make_engine()))   # id 2, after the start
        d = me.push({"v": 1})
        also = me.push({"v": 1}, targets=[0, 1, 2])   # named targets are not 'all'
    finally:
        multiengine.call_started.reset(token)
    assert await within(d) == [None, None]
    assert await within(also) == [None, None, None]
    assert await within(me.pull("v")) == [1, 1, 1]   # a later call goes to all three


@pytest_twisted.ensureDeferred
async def test_a_call_to_all_begun_before_every_engine_registered_says_so(make_controller,
                                                                         make_engine):
    controller = make_controller(0)
    me = IFullMultiEngine(controller)
    token = multiengine.call_started.set(time.monotonic())
    try:
        controller.register_engine(QueuedEngine(make_engine()))
        d = me.execute("a = 1")
    finally:
        multiengine.call_started.reset(token)
    with pytest.raises(NoEnginesRegistered) as info:
        await within(d)
    assert "no engine was registered when this execute to 'all' began" in str(info.value)


@pytest_twisted.ensureDeferred
async def test_a_lost_engine_whose_id_went_to_a_newcomer_is_still_reported(make_controller,
                                                                          make_engine):
    controller = make_controller(2)
    me = IFullMultiEngine(controller)
    token = multiengine.call_started.set(time.monotonic())
    try:
        controller.unregister_engine(1)
        assert controller.register_engine(QueuedEngine(make_engine()))["id"] == 1  # reused
        d = me.push({"v": 1})
    finally:
        multiengine.call_started.reset(token)
    with pytest.raises(CompositeError) as info:
        await within(d)
    err = info.value
    assert err.engine_ids == [0, 1] and err.failed == [1] and err.successes == {0: None}
    assert "engine 1 was lost while this push to 'all' was on its way" in str(err)


def test_gather_keeps_the_order_and_consumes_failures():
    from twisted.internet import defer

    from ipkernel.controller.multiengine import gather
    first, second, third = defer.Deferred(), defer.Deferred(), defer.Deferred()
    outcome = []
    gather([first, second, third]).addCallback(outcome.append)
    third.callback("c")
    second.errback(ValueError("b failed"))
    assert outcome == []
    first.callback("a")
    [(a, b, c)] = outcome
    assert a == "a" and c == "c" and b.check(ValueError)
    assert second.result is None  # consumed: no unhandled error left behind
    done = []
    gather([]).addCallback(done.append)
    assert done == [[]]
