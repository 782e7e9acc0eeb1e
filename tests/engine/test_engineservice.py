"""EngineService -- IEngineCore, IEngineSerialized and IEngineProperties.

Every test taking the ``engine`` fixture (or ``new_engine``) runs six times:
on the EngineService itself ("direct") and through the queue adapter
``IEngineQueued(service)`` ("queued") -- tier 1 -- and through real Foolscap
Tubs on loopback: the service served by FCEngineFromService and used through
``RemoteEngine(rref, decode=True)`` ("foolscap") or
``QueuedEngine(RemoteEngine(...))`` ("foolscap-queued"), and the same two
with the calls on a lane ("lane", "lane-queued") -- tier 2.
Queue-only behaviour lives in test_queued.py.
"""
import itertools
import threading
import types

import pytest
import pytest_twisted
from twisted.internet import defer, reactor
from zope.interface.verify import verifyObject

from ipkernel.engine import EngineService, Interpreter, QueuedEngine, StrictDict, get_engine
from ipkernel.engine.functions import SingleArguments
from ipkernel.error import ENGINE_INFO_ATTR, TRACEBACK_ATTR, EngineError, InvalidProperty, \
    ResultEvicted, SerializationError
from ipkernel.interfaces import (IEngineBase, IEngineCore, IEngineProperties, IEngineQueued,
                                 IEngineSerialized, ISerialized)
from ipkernel.serialize import Serialized, serialize, unserialize

WAIT = 10  # seconds: upper bound for waits that could hang

_ids = itertools.count(70_000)

# Module globals used by functions shipped to engines (the engine gets them only
# through the function's captured globals).
MODULE_OFFSET = 1000


def _module_helper(x):
    return x + MODULE_OFFSET


def uses_module_names(x):
    return _module_helper(x) * 2


def times_two(x):
    return 2 * x


def plus_one(x):
    return x + 1


def reads_engine_names():
    # ``id`` is the builtin here, the engine id on the engine; ``engine_only_value``
    # does not exist in this module at all.
    return id, engine_only_value  # noqa: F821


def scaled(x):
    return x * SCALE  # noqa: F821  (SCALE is defined below, after the function)


SCALE = 7


def make_adder(n):
    def add(x, y=2):
        return x + n + y
    return add


def raises_in_apply():
    raise ValueError("raised by a shipped function: marker-qz")


ENGINE_MODES = [
    pytest.param("direct", marks=pytest.mark.tier1),
    pytest.param("queued", marks=pytest.mark.tier1),
    pytest.param("foolscap", marks=pytest.mark.tier2),
    pytest.param("foolscap-queued", marks=pytest.mark.tier2),
    pytest.param("lane", marks=pytest.mark.tier2),
    pytest.param("lane-queued", marks=pytest.mark.tier2),
]


@pytest.fixture(params=ENGINE_MODES)
def new_engine(request, make_engine, make_remote_engine):
    """``new(**EngineService kwargs) -> engine API`` (the service, its queue,
    a RemoteEngine over Foolscap, or the queue over that RemoteEngine)."""
    queued = request.param.endswith("queued")
    remote = request.param.startswith(("foolscap", "lane"))
    lane = request.param.startswith("lane")

    def new(**kwargs):
        service = make_engine(**kwargs)
        api = make_remote_engine(service, lane=lane) if remote else service
        if queued and "history_cap" in kwargs:
            api = QueuedEngine(api, history_cap=kwargs["history_cap"])
        elif queued:
            api = IEngineQueued(api)
        new.services[id(api)] = service
        return api

    new.services = {}
    new.queued = queued
    new.remote = remote
    return new


@pytest.fixture
def engine(new_engine):
    return new_engine()


@pytest.fixture
def service(engine, new_engine):
    """The EngineService behind ``engine``."""
    return new_engine.services[id(engine)]


@pytest.fixture
def engine_id(service):
    """Give ``service`` a fresh id (as a controller would) and return it."""
    value = next(_ids)
    service.id = value
    yield value


def _fresh_result(source, engine_id):
    expected = Interpreter().execute(source)
    expected["id"] = engine_id
    return expected


def _user_frames(traceback_text):
    return [line for line in traceback_text.splitlines() if line.lstrip().startswith('File "')]


# =========================================================================== interfaces

def test_provides_the_engine_interfaces(engine, new_engine):
    for iface in (IEngineCore, IEngineSerialized, IEngineProperties, IEngineBase):
        assert iface.providedBy(engine)
        verifyObject(iface, engine)
    if new_engine.queued:
        verifyObject(IEngineQueued, engine)


def test_service_is_a_named_twisted_service(make_engine):
    from twisted.application.service import IService
    service = make_engine()
    assert IService.providedBy(service)
    assert service.running
    assert service.id is None


@pytest_twisted.ensureDeferred
async def test_every_method_returns_a_deferred(engine):
    calls = [
        ("push", ({"a": 10},)), ("execute", ("b = a * 2",)), ("pull", ("b",)),
        ("get_result", ()), ("keys", ()), ("push_function", ({"f": plus_one},)),
        ("pull_function", ("f",)), ("apply", (plus_one, (1,))), ("starmap", (plus_one, [(1,)])),
        ("complete", ("a",)), ("push_serialized", ({"s": serialize(1)},)),
        ("pull_serialized", ("s",)), ("set_properties", ({"p": 1},)), ("get_properties", ()),
        ("has_properties", (["p"],)), ("del_properties", (["p"],)), ("clear_properties", ()),
        ("interrupt", ()), ("reset", ()),
    ]
    for name, args in calls:
        d = getattr(engine, name)(*args)
        assert isinstance(d, defer.Deferred), name
        await d.addTimeout(WAIT, reactor)


@pytest_twisted.ensureDeferred
async def test_chain_of_core_calls(engine):
    result = await engine.execute("a = 5")
    assert await engine.pull("a") == 5
    assert (await engine.get_result())["number"] == result["number"]
    assert "a" in await engine.keys()
    assert await engine.push({"a": 6}) is None
    assert await engine.pull("a") == 6


# =========================================================================== execute

@pytest_twisted.ensureDeferred
async def test_valid_command_equals_fresh_interpreter_result(engine, service, valid_command):
    result = await engine.execute(valid_command)
    assert result == _fresh_result(valid_command, service.id)


@pytest_twisted.ensureDeferred
async def test_invalid_command_fails_with_its_own_type(engine, invalid_command):
    source, expected = invalid_command
    with pytest.raises(BaseException) as info:
        await engine.execute(source)
    assert type(info.value) is expected


@pytest_twisted.ensureDeferred
async def test_displayed_value(engine):
    result = await engine.execute("import math; 2.0*math.pi")
    import math
    assert result["display"]["repr"] == repr(2.0 * math.pi)
    assert result["number"] == 1
    assert result["input"] == {"raw": "import math; 2.0*math.pi",
                               "translated": "import math; 2.0*math.pi"}


@pytest_twisted.ensureDeferred
async def test_stdout_and_stderr_are_captured_not_printed(engine, capsys):
    result = await engine.execute("import sys\nprint('to out')\nprint('to err', file=sys.stderr)")
    assert result["stdout"] == "to out\n"
    assert result["stderr"] == "to err\n"
    captured = capsys.readouterr()
    assert "to out" not in captured.out and "to err" not in captured.err


@pytest_twisted.ensureDeferred
async def test_numbering_and_failed_command_consumes_a_number(engine):
    assert (await engine.execute("a = 1"))["number"] == 1
    with pytest.raises(ZeroDivisionError):
        await engine.execute("1/0")
    assert (await engine.execute("b = 2"))["number"] == 3
    failed = await engine.get_result(2)
    assert failed["number"] == 2
    assert "traceback" in failed
    assert failed["input"]["raw"] == "1/0"


@pytest_twisted.ensureDeferred
async def test_syntax_error_fails_and_consumes_a_number(engine):
    with pytest.raises(SyntaxError):
        await engine.execute("def broken(:\n    pass")
    assert (await engine.execute("ok = 1"))["number"] == 2


@pytest_twisted.ensureDeferred
async def test_execute_of_non_str_fails_with_type_error(engine):
    with pytest.raises(TypeError):
        await engine.execute(42)


# =========================================================================== errors carry engine info

@pytest_twisted.ensureDeferred
async def test_execute_error_carries_engine_info_and_user_traceback(engine, engine_id):
    with pytest.raises(NameError) as info:
        await engine.execute("x = 1\ny = missing_name_zz + x")
    exc = info.value
    assert getattr(exc, ENGINE_INFO_ATTR) == {"engine_id": engine_id, "method": "execute"}
    text = getattr(exc, TRACEBACK_ATTR)
    assert "y = missing_name_zz + x" in text
    assert "NameError" in text
    frames = _user_frames(text)
    assert frames, text
    assert not [f for f in frames if "twisted" in f or "/ipkernel/" in f], text


@pytest_twisted.ensureDeferred
async def test_error_info_names_the_method(engine, engine_id):
    with pytest.raises(NameError) as info:
        await engine.pull("never_defined_zz")
    assert getattr(info.value, ENGINE_INFO_ATTR) == {"engine_id": engine_id, "method": "pull"}
    assert "never_defined_zz" in str(info.value)

    with pytest.raises(ValueError) as info:
        await engine.apply(raises_in_apply)
    assert getattr(info.value, ENGINE_INFO_ATTR) == {"engine_id": engine_id, "method": "apply"}
    text = getattr(info.value, TRACEBACK_ATTR)
    assert 'raise ValueError("raised by a shipped function: marker-qz")' in text
    assert "raises_in_apply" in text


@pytest_twisted.ensureDeferred
async def test_untagged_engine_reports_engine_id_none(engine, service):
    assert service.id is None
    with pytest.raises(ZeroDivisionError) as info:
        await engine.execute("1/0")
    assert getattr(info.value, ENGINE_INFO_ATTR) == {"engine_id": None, "method": "execute"}


# =========================================================================== id and mpi

@pytest_twisted.ensureDeferred
async def test_setting_the_id_publishes_it(engine, service, engine_id):
    assert service.id == engine_id
    assert await engine.pull("id") == engine_id
    assert (await engine.execute("a = 1"))["id"] == engine_id
    assert (await engine.get_result(1))["id"] == engine_id
    assert (await engine.execute("id + 1"))["display"]["repr"] == repr(engine_id + 1)


def test_id_must_be_an_int_or_none(make_engine):
    service = make_engine()
    for bad in ("3", 2.0, True):
        with pytest.raises(TypeError):
            service.id = bad
    service.id = None
    assert service.id is None


@pytest_twisted.ensureDeferred
async def test_mpi_engine_takes_its_rank_as_id(make_engine):
    mpi = types.SimpleNamespace(rank=next(_ids), size=4)
    service = make_engine(mpi=mpi)
    assert service.id == mpi.rank
    assert await service.pull("id") == mpi.rank
    assert (await service.pull("mpi")).rank == mpi.rank
    assert {"id", "mpi"} <= set(await service.keys())


@pytest_twisted.ensureDeferred
async def test_engine_without_mpi_has_mpi_none(engine):
    assert await engine.pull("mpi") is None
    assert await engine.pull("id") is None


# =========================================================================== push / pull

@pytest.mark.parametrize("value", [10, "hi there", 1.25, {"p": (1, 2)}, None, [1, [2, "x"]],
                                   b"\x00\x01", (), {"nested": {"deep": [None, True]}}],
                         ids=repr)
@pytest_twisted.ensureDeferred
async def test_push_pull_round_trip(engine, value):
    assert await engine.push({"a": value}) is None
    assert await engine.pull("a") == value


@pytest_twisted.ensureDeferred
async def test_push_pull_numpy_array(engine):
    np = pytest.importorskip("numpy")
    a = np.random.default_rng(0).random((5, 7))
    await engine.push({"arr": a})
    back = await engine.pull("arr")
    np.testing.assert_array_equal(back, a)
    result = await engine.execute("total = float(arr.sum())")
    assert "traceback" not in result
    assert await engine.pull("total") == pytest.approx(float(a.sum()))


@pytest_twisted.ensureDeferred
async def test_pushed_values_are_used_by_execute(engine):
    await engine.push({"a": 10, "b": 32})
    result = await engine.execute("c = a + b\nc")
    assert result["display"]["repr"] == "42"


@pytest_twisted.ensureDeferred
async def test_pull_list_or_tuple_always_gives_a_list(engine):
    await engine.push({"a": 10, "b": 20})
    assert await engine.pull(["a"]) == [10]
    assert await engine.pull(("a",)) == [10]
    assert await engine.pull(["a", "b"]) == [10, 20]
    assert await engine.pull(("b", "a")) == [20, 10]
    assert await engine.pull([]) == []


@pytest_twisted.ensureDeferred
async def test_pull_missing_fails_with_name_error(engine):
    with pytest.raises(NameError, match="missing_zz"):
        await engine.pull("missing_zz")
    await engine.push({"a": 1})
    with pytest.raises(NameError, match="missing_zz"):
        await engine.pull(["a", "missing_zz"])


@pytest.mark.parametrize("keys", [5, None, [1], ("a", 2), {"a": 1}, b"a"], ids=repr)
@pytest_twisted.ensureDeferred
async def test_pull_bad_key_type_fails_with_type_error(engine, keys):
    await engine.push({"a": 1})
    with pytest.raises(TypeError):
        await engine.pull(keys)


@pytest.mark.parametrize("namespace", [["a", 1], "a=1", None, {1: "x"}, {("t",): 1}], ids=repr)
@pytest_twisted.ensureDeferred
async def test_push_bad_namespace_fails_with_type_error(engine, namespace):
    with pytest.raises(TypeError):
        await engine.push(namespace)


@pytest_twisted.ensureDeferred
async def test_push_is_all_or_nothing(engine):
    with pytest.raises(TypeError):
        await engine.push({"good_zz": 1, 2: "bad"})
    with pytest.raises(NameError):
        await engine.pull("good_zz")


@pytest_twisted.ensureDeferred
async def test_pull_after_reset_fails_with_name_error(engine):
    await engine.push({"a": 10})
    assert await engine.pull("a") == 10
    assert await engine.reset() is None
    with pytest.raises(NameError):
        await engine.pull("a")


# =========================================================================== functions

@pytest_twisted.ensureDeferred
async def test_push_function_then_call_it_in_execute(engine):
    assert await engine.push_function({"f": times_two}) is None
    await engine.execute("result = f(10)")
    assert await engine.pull("result") == times_two(10)


@pytest_twisted.ensureDeferred
async def test_pull_function_gives_callables(engine):
    await engine.push_function({"f": times_two, "g": plus_one})
    f, g = await engine.pull_function(("f", "g"))
    assert (f(5), g(5)) == (10, 6)
    single = await engine.pull_function("g")
    assert callable(single) and single(1) == 2
    assert [h(3) for h in await engine.pull_function(["f"])] == [6]


@pytest_twisted.ensureDeferred
async def test_pull_function_of_function_defined_on_engine(engine):
    await engine.execute("def sq(x):\n    return x * x")
    sq = await engine.pull_function("sq")
    assert sq(9) == 81


@pytest_twisted.ensureDeferred
async def test_push_function_refuses_non_functions(engine):
    with pytest.raises(TypeError):
        await engine.push_function({"f": 5})
    with pytest.raises(TypeError):
        await engine.push_function({"ok": plus_one, "bad": "not a function"})
    with pytest.raises(TypeError):
        await engine.push_function(plus_one)


@pytest_twisted.ensureDeferred
async def test_pull_function_refuses_non_functions_and_missing_names(engine):
    await engine.push({"x": 1})
    with pytest.raises(TypeError):
        await engine.pull_function("x")
    with pytest.raises(NameError):
        await engine.pull_function("nothing_here_zz")


@pytest_twisted.ensureDeferred
async def test_pushed_function_sees_engine_globals(engine, engine_id):
    await engine.push({"engine_only_value": "from the engine"})
    await engine.push_function({"reads": reads_engine_names})
    await engine.execute("seen = reads()")
    assert tuple(await engine.pull("seen")) == (engine_id, "from the engine")


@pytest_twisted.ensureDeferred
async def test_pushed_function_sees_later_engine_changes(engine):
    await engine.push({"engine_only_value": 1})
    await engine.push_function({"reads": reads_engine_names})
    await engine.push({"engine_only_value": 2})
    await engine.execute("seen = reads()[1]")
    assert await engine.pull("seen") == 2


@pytest_twisted.ensureDeferred
async def test_names_from_the_defining_module_are_added_when_missing(engine):
    await engine.push_function({"fn": uses_module_names})
    await engine.execute("r = fn(1)")
    assert await engine.pull("r") == uses_module_names(1)
    await engine.push_function({"scaled": scaled})
    await engine.execute("s = scaled(3)")
    assert await engine.pull("s") == 21
    assert await engine.pull("SCALE") == SCALE


@pytest_twisted.ensureDeferred
async def test_engine_definitions_win_over_captured_module_names(engine):
    await engine.push({"SCALE": 100})
    await engine.push_function({"scaled": scaled})
    await engine.execute("s = scaled(3)")
    assert await engine.pull("s") == 300
    assert await engine.pull("SCALE") == 100


@pytest_twisted.ensureDeferred
async def test_closures_defaults_and_lambdas_survive_push_function(engine):
    await engine.push_function({"add": make_adder(10), "lam": lambda x, k=3: x * k})
    await engine.execute("r = (add(1), add(1, y=0), lam(2), lam(2, k=5))")
    assert tuple(await engine.pull("r")) == (13, 11, 6, 10)


@pytest_twisted.ensureDeferred
async def test_apply(engine):
    assert await engine.apply(plus_one, (41,)) == 42
    assert await engine.apply(make_adder(10), (1,), {"y": 5}) == 16
    assert await engine.apply(lambda *a, **k: (a, k), (1, 2), {"z": 3}) == ((1, 2), {"z": 3})
    assert await engine.apply(lambda: "no args") == "no args"
    assert await engine.apply(uses_module_names, [1]) == uses_module_names(1)


@pytest_twisted.ensureDeferred
async def test_apply_runs_with_engine_namespace_as_globals(engine, engine_id):
    await engine.push({"engine_only_value": [1, 2, 3]})
    assert tuple(await engine.apply(reads_engine_names)) == (engine_id, [1, 2, 3])
    await engine.apply(lambda: globals().__setitem__("set_by_apply", 5))
    assert await engine.pull("set_by_apply") == 5


@pytest_twisted.ensureDeferred
async def test_apply_failure_keeps_its_type(engine):
    with pytest.raises(ZeroDivisionError):
        await engine.apply(lambda x: x / 0, (1,))
    with pytest.raises(TypeError):
        await engine.apply(plus_one, (1, 2, 3))


def _ok_values(outcomes):
    return [(ok, value) for ok, value, _, _ in outcomes]


@pytest_twisted.ensureDeferred
async def test_apply_batch_runs_every_call_in_order(engine):
    await engine.push({"log": []})
    outcomes = await engine.apply_batch([
        (lambda i: log.append(i) or i * 10, (i,), {}) for i in range(5)  # noqa: F821
    ])
    assert _ok_values(outcomes) == [(True, i * 10) for i in range(5)]
    assert await engine.pull("log") == [0, 1, 2, 3, 4]
    for _, _, started, finished in outcomes:
        assert started <= finished
    assert [o[2] for o in outcomes] == sorted(o[2] for o in outcomes)


@pytest_twisted.ensureDeferred
async def test_apply_batch_failure_is_per_call(engine):
    outcomes = await engine.apply_batch([
        (plus_one, (1,), {}),
        (lambda x: x / 0, (1,), None),
        (plus_one, (2,), {}),
        (plus_one, (1, 2, 3), {}),
    ])
    assert [ok for ok, *_ in outcomes] == [True, False, True, False]
    assert outcomes[0][1] == 2 and outcomes[2][1] == 3
    assert outcomes[1][1].check(ZeroDivisionError)
    assert outcomes[3][1].check(TypeError)
    # a failed call in a batch does not clear what was queued behind the batch
    assert await engine.apply(plus_one, (9,)) == 10


@pytest_twisted.ensureDeferred
async def test_apply_batch_of_nothing_and_bad_input(engine):
    assert await engine.apply_batch([]) == []
    with pytest.raises(TypeError, match="list of"):
        await engine.apply_batch("not calls")


@pytest_twisted.ensureDeferred
async def test_apply_batch_interrupt_stops_the_rest(engine, make_gate):
    gate = make_gate()
    name = gate.name

    def spin():
        __import__(name).notify()
        while True:
            pass

    d = engine.apply_batch([(plus_one, (1,), {}), (spin, (), {}), (plus_one, (2,), {})])
    try:
        await gate.wait_started()
        assert await engine.interrupt() is True
        outcomes = await d.addTimeout(WAIT, reactor)
    finally:
        if not d.called:
            await engine.interrupt()
    assert outcomes[0][:2] == (True, 2)
    assert outcomes[1][0] is False and outcomes[1][1].check(KeyboardInterrupt)
    assert outcomes[2] == (None, None, None, None)


@pytest_twisted.ensureDeferred
async def test_starmap(engine):
    assert await engine.starmap(lambda a, b: a + b, [(1, 2), (3, 4), (5, 6)]) == [3, 7, 11]
    assert await engine.starmap(plus_one, []) == []
    await engine.push({"engine_only_value": 100})
    assert await engine.starmap(lambda x: x + engine_only_value, [(1,), (2,)]) == [101, 102]  # noqa: F821


@pytest_twisted.ensureDeferred
async def test_starmap_of_single_arguments(engine):
    # a map over one sequence sends its slice as it is, each item the one argument
    assert await engine.starmap(lambda x: x * 3, SingleArguments(range(2, 6))) == [6, 9, 12, 15]
    assert await engine.starmap(len, SingleArguments(("ab", (1, 2, 3)))) == [2, 3]
    assert await engine.starmap(plus_one, SingleArguments([])) == []


@pytest_twisted.ensureDeferred
async def test_starmap_leaves_no_names_behind(engine):
    before = sorted(await engine.keys())
    await engine.starmap(make_adder(1), [(1,), (2,)])
    assert sorted(await engine.keys()) == before


@pytest_twisted.ensureDeferred
async def test_starmap_failure_keeps_its_type(engine):
    with pytest.raises(ZeroDivisionError):
        await engine.starmap(lambda x: 1 / x, [(1,), (0,), (2,)])


# =========================================================================== complete / keys

@pytest_twisted.ensureDeferred
async def test_complete_keyword(engine):
    completions = await engine.complete("impo")
    assert "import" in completions
    assert completions == sorted(completions)


@pytest_twisted.ensureDeferred
async def test_complete_user_names_and_attributes(engine):
    await engine.push({"my_variable_1": 1, "my_variable_2": 2})
    assert await engine.complete("my_var") == ["my_variable_1", "my_variable_2"]
    await engine.execute("import os")
    completions = await engine.complete("os.pa", "x = os.pa")
    assert {"os.path", "os.pardir"} <= set(completions)
    assert all(c.startswith("os.pa") for c in completions)
    assert completions == sorted(completions)
    assert await engine.complete("zzz_nothing_") == []


@pytest_twisted.ensureDeferred
async def test_keys(engine):
    keys = await engine.keys()
    assert isinstance(keys, list)
    assert {"id", "mpi"} <= set(keys)
    await engine.push({"a": 1})
    await engine.execute("b = 2\n6 * 7")
    keys = set(await engine.keys())
    assert {"a", "b", "id", "mpi"} <= keys
    hidden = {"__builtins__", "__name__", "In", "Out", "_ih", "_oh", "_", "__", "___", "input",
              "raw_input"}
    assert not keys & hidden


# =========================================================================== get_result

@pytest_twisted.ensureDeferred
async def test_get_result_on_fresh_engine_fails_index_error(engine):
    with pytest.raises(IndexError):
        await engine.get_result()
    with pytest.raises(IndexError):
        await engine.get_result(None)
    with pytest.raises(IndexError):
        await engine.get_result(10)


@pytest.mark.parametrize("bad", ["1", 1.5, [1]], ids=repr)
@pytest_twisted.ensureDeferred
async def test_get_result_non_int_fails_type_error(engine, bad):
    await engine.execute("a = 1")
    with pytest.raises(TypeError):
        await engine.get_result(bad)


@pytest_twisted.ensureDeferred
async def test_get_result_equals_execute_result(engine, valid_command):
    result = await engine.execute(valid_command)
    assert await engine.get_result(result["number"]) == result


@pytest_twisted.ensureDeferred
async def test_get_result_default_is_the_latest(engine):
    results = [await engine.execute(src) for src in ("a = 1", "print(a)", "a + 1")]
    assert await engine.get_result() == results[-1]
    assert await engine.get_result(2) == results[1]
    with pytest.raises(IndexError):
        await engine.get_result(4)


@pytest_twisted.ensureDeferred
async def test_get_result_of_evicted_command_fails_result_evicted(new_engine):
    engine = new_engine(history_cap=2)
    for i in range(4):
        await engine.execute(f"x = {i}")
    for n in (1, 2):
        with pytest.raises(ResultEvicted):
            await engine.get_result(n)
    assert (await engine.get_result(3))["input"]["raw"] == "x = 2"
    with pytest.raises(IndexError) as info:
        await engine.get_result(5)
    assert not isinstance(info.value, ResultEvicted)


# =========================================================================== reset

@pytest_twisted.ensureDeferred
async def test_reset_restarts_numbering_and_clears_everything(engine, engine_id):
    await engine.execute("a = 1")
    await engine.execute("b = 2")
    await engine.set_properties({"p": 1})
    await engine.reset()
    assert (await engine.execute("c = 3"))["number"] == 1
    keys = set(await engine.keys())
    assert "a" not in keys and "b" not in keys
    assert await engine.get_properties() == {}
    assert await engine.pull("id") == engine_id


@pytest_twisted.ensureDeferred
async def test_exec_lines_run_at_start_and_after_reset(new_engine):
    engine = new_engine(exec_lines=["import math as m", "seed = 41 + 1"])
    assert await engine.pull("seed") == 42
    result = await engine.execute("m.floor(2.5)")
    assert result["display"]["repr"] == "2"
    await engine.push({"seed": 0})
    await engine.reset()
    assert await engine.pull("seed") == 42


# =========================================================================== kill

@pytest.mark.parametrize("call", [
    ("execute", ("a = 1",)), ("push", ({"a": 1},)), ("pull", ("id",)), ("keys", ()),
    ("get_result", ()), ("apply", (plus_one, (1,))), ("push_serialized", ({"a": serialize(1)},)),
    ("get_properties", ()), ("set_properties", ({"a": 1},)), ("reset", ()),
], ids=lambda c: c[0])
@pytest_twisted.ensureDeferred
async def test_calls_after_kill_fail_engine_error(engine, call):
    await engine.execute("a = 1")
    assert await engine.kill() is None
    name, args = call
    with pytest.raises(EngineError):
        await getattr(engine, name)(*args).addTimeout(WAIT, reactor)


@pytest_twisted.ensureDeferred
async def test_kill_calls_the_kill_hook(new_engine):
    called = []
    engine = new_engine(kill_hook=lambda: called.append("killed"))
    await engine.execute("a = 1")
    await engine.kill()
    assert called == ["killed"]


# =========================================================================== threads: the reactor stays free

@pytest_twisted.ensureDeferred
async def test_reactor_keeps_serving_while_user_code_sleeps(new_engine):
    sleeper, other = new_engine(), new_engine()
    events = []

    d_sleep = sleeper.execute("import time; time.sleep(3)")
    # User code does not run on the reactor thread: the call returned at once.
    assert not d_sleep.called
    d_sleep.addCallback(lambda r: events.append("sleeper finished") or r)

    timer = defer.Deferred()
    call = reactor.callLater(0.05, lambda: (events.append("timer fired"), timer.callback(None)))
    d_other = other.execute("x = 6 * 7\nx")
    d_other.addCallback(lambda r: events.append("other engine finished") or r)
    try:
        other_result = await d_other.addTimeout(WAIT, reactor)
        await timer.addTimeout(WAIT, reactor)
    finally:
        if call.active():
            call.cancel()
    assert other_result["display"]["repr"] == "42"
    assert "sleeper finished" not in events
    assert not d_sleep.called

    result = await d_sleep.addTimeout(WAIT, reactor)
    assert result["number"] == 1
    assert sorted(events[:2]) == ["other engine finished", "timer fired"]
    assert events[2:] == ["sleeper finished"]


@pytest_twisted.ensureDeferred
async def test_output_capture_is_per_engine_thread(new_engine, make_gate):
    first, second = new_engine(), new_engine()
    gate = make_gate()
    d_first = first.execute("print('from first')\n" + gate.hold_code() + "\nprint('first again')")
    await gate.wait_started()
    second_result = await second.execute("print('from second')").addTimeout(WAIT, reactor)
    assert second_result["stdout"] == "from second\n"
    gate.open()
    first_result = await d_first.addTimeout(WAIT, reactor)
    assert first_result["stdout"] == "from first\nfirst again\n"


@pytest_twisted.ensureDeferred
async def test_user_code_runs_in_one_dedicated_thread(engine):
    await engine.execute("import threading\nt1 = threading.get_ident()")
    await engine.execute("t2 = threading.get_ident()")
    t1, t2 = await engine.pull(["t1", "t2"])
    assert t1 == t2
    assert t1 != threading.get_ident()
    assert await engine.apply(threading.get_ident) == t1


@pytest_twisted.ensureDeferred
async def test_interrupt_stops_a_busy_loop_with_keyboard_interrupt(engine, make_gate):
    gate = make_gate()
    d = engine.execute(f"__import__({gate.name!r}).notify()\nwhile True: pass")
    try:
        await gate.wait_started()
        assert not d.called
        assert await engine.interrupt() is True
        with pytest.raises(KeyboardInterrupt):
            await d.addTimeout(WAIT, reactor)
    finally:
        if not d.called:  # do not leave a spinning thread behind a failed assertion
            await engine.interrupt()
    assert await engine.interrupt() is False
    assert (await engine.execute("after = 1"))["number"] == 2
    assert "traceback" in await engine.get_result(1)


@pytest_twisted.ensureDeferred
async def test_interrupt_when_idle_fires_false(engine):
    assert await engine.interrupt() is False
    await engine.execute("a = 1")
    assert await engine.interrupt() is False
    assert await engine.pull("a") == 1


# =========================================================================== properties

PROPS = {"a": 10, "b": "two", "c": [1, 2.5, None], "d": {"x": (1, 2), "y": b"raw"}, "e": True}


@pytest_twisted.ensureDeferred
async def test_set_then_get_all_properties(engine):
    assert await engine.set_properties(PROPS) is None
    assert await engine.get_properties() == PROPS
    assert await engine.get_properties(None) == PROPS


@pytest_twisted.ensureDeferred
async def test_get_some_properties_and_update(engine):
    await engine.set_properties(PROPS)
    assert await engine.get_properties(("c",)) == {"c": [1, 2.5, None]}
    await engine.set_properties({"c": "changed"})
    assert await engine.get_properties(("c", "d")) == {"c": "changed", "d": PROPS["d"]}
    assert (await engine.get_properties())["a"] == 10


@pytest_twisted.ensureDeferred
async def test_clear_properties(engine):
    await engine.set_properties(PROPS)
    assert await engine.clear_properties() is None
    assert await engine.get_properties() == {}


@pytest_twisted.ensureDeferred
async def test_del_and_has_properties(engine):
    await engine.set_properties(PROPS)
    assert await engine.del_properties(("b", "e")) is None
    assert await engine.has_properties(("a", "b", "c", "d", "e")) == [True, False, True, True, False]


@pytest_twisted.ensureDeferred
async def test_unknown_property_fails_key_error(engine):
    await engine.set_properties({"a": 1})
    with pytest.raises(KeyError, match="nope"):
        await engine.get_properties(["a", "nope"])
    with pytest.raises(KeyError, match="nope"):
        await engine.del_properties(["nope"])
    assert await engine.get_properties() == {"a": 1}


@pytest.mark.parametrize("bad", [
    {"f": lambda: 1}, {"o": object()}, {"s": {1, 2}}, {"n": [1, object()]},
    {"d": {"k": threading.Lock()}}, {1: "non-str key"},
], ids=["lambda", "object", "set", "nested-object", "nested-lock", "int-key"])
@pytest_twisted.ensureDeferred
async def test_non_plain_property_fails_invalid_property(engine, bad):
    with pytest.raises(InvalidProperty):
        await engine.set_properties(bad)
    assert await engine.get_properties() == {}


@pytest_twisted.ensureDeferred
async def test_set_properties_is_all_or_nothing(engine):
    with pytest.raises(InvalidProperty):
        await engine.set_properties({"good": 1, "bad": object()})
    assert await engine.has_properties(["good", "bad"]) == [False, False]


@pytest_twisted.ensureDeferred
async def test_properties_are_copied_in_and_out(engine):
    mine = [1, 2]
    await engine.set_properties({"l": mine})
    mine.append(3)
    fetched = await engine.get_properties(["l"])
    assert fetched == {"l": [1, 2]}
    fetched["l"].append(99)
    assert await engine.get_properties(["l"]) == {"l": [1, 2]}


@pytest_twisted.ensureDeferred
async def test_properties_attribute_is_a_strict_dict(engine):
    await engine.set_properties({"k": [1]})
    props = engine.properties
    assert isinstance(props, StrictDict)
    assert props["k"] == [1]
    props["k"].append(2)
    assert (await engine.get_properties())["k"] == [1]


@pytest_twisted.ensureDeferred
async def test_engine_code_sets_properties_through_get_engine(engine, service, engine_id):
    assert service.properties is get_engine(engine_id).properties
    await engine.execute("from ipkernel.engine import get_engine\n"
                         "get_engine(id).properties['x'] = 1\n"
                         "get_engine(id).properties['where'] = 'engine'")
    assert await engine.get_properties(["x", "where"]) == {"x": 1, "where": "engine"}
    await engine.set_properties({"from_client": True})
    result = await engine.execute("get_engine(id).properties['from_client']")
    assert result["display"]["repr"] == "True"


@pytest_twisted.ensureDeferred
async def test_engine_code_storing_a_lambda_fails_invalid_property(engine, engine_id):
    with pytest.raises(InvalidProperty):
        await engine.execute("from ipkernel.engine import get_engine\n"
                             "get_engine(id).properties['f'] = lambda: 1")
    assert await engine.has_properties(["f"]) == [False]


@pytest_twisted.ensureDeferred
async def test_engine_code_mutating_a_fetched_list_leaves_the_stored_one(engine, engine_id):
    await engine.execute("from ipkernel.engine import get_engine\n"
                         "props = get_engine(id).properties\n"
                         "props['l'] = [1, 2]\n"
                         "fetched = props['l']\n"
                         "fetched.append(3)")
    assert await engine.pull("fetched") == [1, 2, 3]
    assert await engine.get_properties(["l"]) == {"l": [1, 2]}
    result = await engine.execute("props['l']")
    assert result["display"]["repr"] == "[1, 2]"


@pytest_twisted.ensureDeferred
async def test_properties_of_two_engines_are_separate(new_engine):
    first, second = new_engine(), new_engine()
    await first.set_properties({"who": "first"})
    await second.set_properties({"who": "second"})
    assert await first.get_properties() == {"who": "first"}
    assert await second.get_properties() == {"who": "second"}


# =========================================================================== serialized

@pytest.mark.parametrize("value", [10, "hi there", 2.5, {"p": (1, 2), "q": [None]}, None],
                         ids=repr)
@pytest_twisted.ensureDeferred
async def test_push_pull_serialized_round_trip(engine, value):
    assert await engine.push_serialized({"key": serialize(value)}) is None
    assert await engine.pull("key") == value
    s = await engine.pull_serialized("key")
    assert ISerialized.providedBy(s)
    assert unserialize(s) == value


@pytest_twisted.ensureDeferred
async def test_pull_serialized_list_shapes(engine):
    await engine.push({"a": 1, "b": "two"})
    pair = await engine.pull_serialized(["a", "b"])
    assert isinstance(pair, list) and len(pair) == 2
    assert [unserialize(s) for s in pair] == [1, "two"]
    one = await engine.pull_serialized(("b",))
    assert isinstance(one, list) and [unserialize(s) for s in one] == ["two"]
    assert await engine.pull_serialized([]) == []


@pytest_twisted.ensureDeferred
async def test_push_pull_serialized_numpy(engine):
    np = pytest.importorskip("numpy")
    a = np.arange(24, dtype=np.int16).reshape(4, 6)
    await engine.push_serialized({"arr": serialize(a)})
    back = await engine.pull("arr")
    np.testing.assert_array_equal(back, a)
    s = await engine.pull_serialized("arr")
    assert s.get_type_descriptor() == "ndarray"
    got = unserialize(s)
    np.testing.assert_array_equal(got, a)
    assert got.dtype == a.dtype


@pytest_twisted.ensureDeferred
async def test_pull_serialized_missing_fails_name_error(engine):
    with pytest.raises(NameError):
        await engine.pull_serialized("nothing_zz")
    with pytest.raises(NameError):
        await engine.pull_serialized(["id", "nothing_zz"])


@pytest_twisted.ensureDeferred
async def test_lambdas_travel_serialized(engine):
    await engine.execute("f = lambda x: x * 3")
    f = unserialize(await engine.pull_serialized("f"))
    assert f(2) == 6
    await engine.push_serialized({"g": serialize(lambda y, z=1: y - z)})
    assert (await engine.execute("g(10)"))["display"]["repr"] == "9"


@pytest_twisted.ensureDeferred
async def test_pull_serialized_of_unpicklable_fails_serialization_error(engine):
    await engine.execute("import threading\nlock = threading.Lock()")
    with pytest.raises(SerializationError, match="lock"):
        await engine.pull_serialized("lock")


@pytest_twisted.ensureDeferred
async def test_push_serialized_garbage_fails_serialization_error_and_pushes_nothing(engine):
    bad = Serialized([b"definitely not a pickle"], "pickle", {})
    with pytest.raises(SerializationError):
        await engine.push_serialized({"good_zz": serialize(1), "bad_zz": bad})
    assert not {"good_zz", "bad_zz"} & set(await engine.keys())


@pytest_twisted.ensureDeferred
async def test_push_serialized_bad_namespace_fails_type_error(engine):
    with pytest.raises(TypeError):
        await engine.push_serialized([serialize(1)])


# =========================================================================== direct-only details

def test_engine_service_interfaces_without_start():
    service = EngineService()
    verifyObject(IEngineBase, service)
    assert service.id is None


# =========================================================================== issue 13: names a push may bind

BAD_NAMES = [
    ({"__builtins__": 1}, ValueError, "'__builtins__'"),
    ({"not an identifier": 1}, ValueError, "'not an identifier'"),
    ({"1x": 1}, ValueError, "'1x'"),
    ({"lambda": 1}, ValueError, "'lambda'"),
    ({3: 1}, TypeError, "3"),
]


@pytest.mark.parametrize("method", ["push", "push_serialized", "push_function"])
@pytest.mark.parametrize("bad, error, named", BAD_NAMES, ids=lambda v: repr(v)[:24])
@pytest_twisted.ensureDeferred
async def test_a_push_that_would_break_the_namespace_is_refused_and_changes_nothing(
        engine, method, bad, error, named):
    value = {"push": 1, "push_serialized": serialize(1), "push_function": plus_one}[method]
    namespace = {"good_zz": value, **{k: value for k in bad}}
    before = sorted(await engine.keys())
    with pytest.raises(error) as info:
        await getattr(engine, method)(namespace).addTimeout(WAIT, reactor)
    assert named in str(info.value) and "nothing was pushed" in str(info.value)
    assert sorted(await engine.keys()) == before
    result = await engine.execute("n = len('abc')\nn")
    assert result["display"]["repr"] == "3"   # builtins still work


@pytest_twisted.ensureDeferred
async def test_a_task_push_of_builtins_is_refused(engine):
    from ipkernel.engine.taskbody import string_task
    with pytest.raises(ValueError, match="__builtins__"):
        await engine.apply(string_task, ({"__builtins__": 0}, "x = 1", ()))
    assert (await engine.execute("len('ab')"))["display"]["repr"] == "2"


# =========================================================================== issue 13: kill out of band

@pytest.mark.parametrize("mode", [pytest.param("direct", marks=pytest.mark.tier1),
                                  pytest.param("foolscap", marks=pytest.mark.tier2),
                                  pytest.param("lane", marks=pytest.mark.tier2)])
@pytest_twisted.ensureDeferred
async def test_kill_is_answered_while_user_code_runs_and_fails_that_code(
        mode, make_engine, make_remote_engine, make_gate):
    # (QueuedEngine.kill waits its turn; the controller's kill goes around the
    # queue: tests/controller/test_multiengine.py)
    engine = make_engine()
    if mode != "direct":
        engine = make_remote_engine(engine, lane=mode == "lane")
    gate = make_gate()
    running = engine.execute(gate.spin_code())
    await gate.wait_started()
    waiting = engine.execute("never = 1")
    killed = engine.kill()
    await killed.addTimeout(WAIT, reactor)   # answered with the code still spinning
    assert not gate.release_event.is_set()
    with pytest.raises(EngineError, match="killed by a client while running it"):
        await running.addTimeout(WAIT, reactor)
    with pytest.raises(EngineError, match="killed by a client before it ran"):
        await waiting.addTimeout(WAIT, reactor)
