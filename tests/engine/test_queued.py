"""Tier 1: QueuedEngine -- what only the queue does.

The whole IEngineBase behaviour through the queue is covered by the
"queued" parametrization of test_engineservice.py.
"""
import pytest
import pytest_twisted
from twisted.internet import defer, reactor
from twisted.logger import globalLogPublisher
from zope.interface import implementer
from zope.interface.verify import verifyObject

from ipkernel.engine import QueuedEngine, current_request
from ipkernel.engine.queued import PIPELINE_DEPTH, ByteHistory, copy_plain, independent
from ipkernel.error import Aborted, EngineError, QueueCleared, ResultEvicted
from ipkernel.interfaces import IEngineBase, IEngineQueued

pytestmark = pytest.mark.tier1

WAIT = 10
EMPTY = {"queue": [], "pending": "None"}


@pytest.fixture
def pair(make_engine):
    """``(queued, service)``."""
    service = make_engine()
    return QueuedEngine(service), service


@pytest.fixture
def logged_failures():
    """Failures logged through twisted.logger while the test runs."""
    failures = []

    def observer(event):
        if event.get("log_failure") is not None:
            failures.append(event["log_failure"])

    globalLogPublisher.addObserver(observer)
    yield failures
    globalLogPublisher.removeObserver(observer)


def _record(events, label, d, expect=None):
    """Append ``label`` (and the exception type on failure) to ``events`` when ``d`` fires."""
    def ok(result):
        events.append((label, "ok"))
        return result

    def failed(f):
        events.append((label, f.type.__name__))
        if expect is not None and f.check(expect):
            return f.value
        return f
    return d.addCallbacks(ok, failed)


async def _wait(d):
    return await d.addTimeout(WAIT, reactor)


# --------------------------------------------------------------------------- adapter and interface

def test_adapter_gives_a_queued_engine(make_engine):
    service = make_engine()
    queued = IEngineQueued(service)
    assert isinstance(queued, QueuedEngine)
    verifyObject(IEngineQueued, queued)
    verifyObject(IEngineBase, queued)
    assert IEngineQueued(queued) is queued


def test_queued_engine_refuses_non_engines():
    with pytest.raises((TypeError, ValueError)):
        QueuedEngine(object())


@pytest_twisted.ensureDeferred
async def test_id_and_properties_delegate_to_the_engine(pair):
    queued, service = pair
    assert queued.properties is service.properties
    queued.id = 81_234
    assert service.id == 81_234
    assert await queued.pull("id") == 81_234
    service.id = 81_235
    assert queued.id == 81_235


# --------------------------------------------------------------------------- order

@pytest_twisted.ensureDeferred
async def test_commands_run_one_at_a_time_in_submission_order(pair, make_gate):
    queued, service = pair
    gate = make_gate()
    await queued.push({"log": []})
    events = []
    held = _record(events, "hold", queued.execute(gate.hold_code()))
    await gate.wait_started()
    waiting = [
        _record(events, "append 1", queued.execute("log.append(1)")),
        _record(events, "push x", queued.push({"x": 2})),
        _record(events, "append x", queued.execute("log.append(x)")),
        _record(events, "apply", queued.apply(lambda: log.append(3))),  # noqa: F821
        _record(events, "set prop", queued.set_properties({"seen": True})),
        _record(events, "append 4", queued.execute("log.append(4)")),
    ]
    # Nothing behind the running command has started, not even what the engine
    # itself would answer at once (properties).
    assert events == []
    assert "seen" not in service.properties
    status = await queued.queue_status()
    assert len(status["queue"]) == len(waiting)
    assert status["pending"].startswith("execute(")
    gate.open()
    await _wait(defer.gatherResults([held] + waiting))
    assert [label for label, _ in events] == ["hold", "append 1", "push x", "append x", "apply",
                                              "set prop", "append 4"]
    assert all(outcome == "ok" for _, outcome in events)
    assert await queued.pull("log") == [1, 2, 3, 4]
    assert await queued.queue_status() == EMPTY


@pytest_twisted.ensureDeferred
async def test_results_are_delivered_to_the_right_callers(pair):
    queued, _ = pair
    ds = [queued.execute(f"v{i} = {i}\nv{i} * 10") for i in range(5)]
    results = await _wait(defer.gatherResults(ds))
    assert [r["number"] for r in results] == [1, 2, 3, 4, 5]
    assert [r["display"]["repr"] for r in results] == ["0", "10", "20", "30", "40"]


# --------------------------------------------------------------------------- failure cascade

@pytest_twisted.ensureDeferred
async def test_failure_clears_the_queue_before_the_failure_is_delivered(pair, make_gate):
    queued, _ = pair
    gate = make_gate()
    events = []
    new_work = []

    held = queued.execute(gate.hold_code())
    await gate.wait_started()
    failing = queued.execute("1/0")
    second = _record(events, "second", queued.execute("a = 1"), QueueCleared)
    third = _record(events, "third", queued.push({"b": 2}), QueueCleared)

    def on_failure(f):
        events.append(("failing", f.type.__name__))
        # reacting to the failure by submitting new work must be safe
        new_work.append(queued.execute("c = 3"))
        return f

    failing.addErrback(on_failure)
    gate.open()
    await _wait(held)
    with pytest.raises(ZeroDivisionError):
        await _wait(failing)
    cleared_second = await _wait(second)
    await _wait(third)

    assert events == [("second", "QueueCleared"), ("third", "QueueCleared"),
                      ("failing", "ZeroDivisionError")]
    assert isinstance(cleared_second, QueueCleared)
    assert "1/0" in str(cleared_second)
    assert len(new_work) == 1
    assert (await _wait(new_work[0]))["number"] == 3  # the cleared command never ran
    assert await queued.pull("c") == 3
    with pytest.raises(NameError):
        await queued.pull("a")
    with pytest.raises(NameError):
        await queued.pull("b")


@pytest_twisted.ensureDeferred
async def test_commands_submitted_after_a_failure_run(pair):
    queued, _ = pair
    with pytest.raises(NameError):
        await queued.execute("undefined_zz")
    assert (await queued.execute("ok = 1"))["number"] == 2
    assert await queued.queue_status() == EMPTY


# --------------------------------------------------------------------------- clear_queue / queue_status

@pytest_twisted.ensureDeferred
async def test_queue_status_of_idle_engine(pair):
    queued, _ = pair
    assert await queued.queue_status() == EMPTY
    await queued.execute("a = 5")
    assert await queued.queue_status() == EMPTY


@pytest_twisted.ensureDeferred
async def test_clear_queue_fails_waiting_commands_and_leaves_the_running_one(pair, make_gate):
    queued, _ = pair
    gate = make_gate()
    hold = gate.hold_code()
    held = queued.execute(hold)
    await gate.wait_started()
    waiting = [queued.execute("a=5"), queued.pull("a"), queued.execute("b = 6")]
    for d in waiting:
        d.addErrback(lambda f: f.trap(QueueCleared) and f.value)

    status = await queued.queue_status()
    assert set(status) == {"queue", "pending"}
    assert status["queue"] == ["execute('a=5')", "pull('a')", "execute('b = 6')"]
    pending = status["pending"]  # long arguments may be shortened
    assert pending.startswith("execute(") and gate.name in pending

    assert await queued.clear_queue("stopped by the test") is None
    cleared = await _wait(defer.gatherResults(waiting))
    assert all(isinstance(exc, QueueCleared) for exc in cleared)
    assert "stopped by the test" in str(cleared[0])
    assert await queued.queue_status() == {"queue": [], "pending": pending}
    assert not held.called

    gate.open()
    result = await _wait(held)
    assert result["number"] == 1
    assert await queued.queue_status() == EMPTY
    with pytest.raises(NameError):
        await queued.pull("a")


@pytest_twisted.ensureDeferred
async def test_clear_queue_on_empty_queue(pair):
    queued, _ = pair
    assert await queued.clear_queue() is None
    assert await queued.queue_status() == EMPTY


@pytest_twisted.ensureDeferred
async def test_command_reprs(pair, make_gate):
    queued, _ = pair
    gate = make_gate()
    held = queued.execute(gate.hold_code())
    await gate.wait_started()
    waiting = [queued.execute("a=5"), queued.push({"a": 1}), queued.pull(["a", "b"]),
               queued.get_properties()]
    for d in waiting:
        d.addErrback(lambda f: f.trap(QueueCleared))
    reprs = (await queued.queue_status())["queue"]
    assert reprs[0] == "execute('a=5')"
    assert reprs[1] == "push({'a': 1})"
    assert reprs[2] == "pull(['a', 'b'])"
    assert reprs[3].startswith("get_properties(")
    await queued.clear_queue()
    gate.open()
    await _wait(held)


# --------------------------------------------------------------------------- get_result cache

@pytest_twisted.ensureDeferred
async def test_get_result_is_served_from_cache_while_engine_is_busy(pair, make_gate):
    queued, _ = pair
    first = await queued.execute("a = 1")
    gate = make_gate()
    held = queued.execute(gate.hold_code())
    await gate.wait_started()
    got = await _wait(queued.get_result(first["number"]))
    assert got == first
    assert not held.called  # answered without waiting for the engine
    gate.open()
    second = await _wait(held)
    assert await queued.get_result(second["number"]) == second


@pytest_twisted.ensureDeferred
async def test_cached_result_outlives_the_engine_history(make_engine):
    service = make_engine(history_cap=1)
    queued = QueuedEngine(service, history_cap=10)
    first = await queued.execute("a = 1")
    await queued.execute("b = 2")
    with pytest.raises(IndexError):
        await service.get_result(1)
    assert await queued.get_result(1) == first


# --------------------------------------------------------------------------- byte budget

def _result(number, stdout=""):
    return {"number": number, "input": {"raw": "x"}, "stdout": stdout}


def test_byte_history_counts_the_output_and_evicts_the_oldest_first():
    history = ByteHistory(cap=1000, max_bytes=3_500_000)
    for n in range(1, 5):
        history.add(n, _result(n, "x" * 1_000_000))
    assert 1 not in history and history.evicted(1)
    assert [n in history for n in (2, 3, 4)] == [True, True, True]
    assert 3_000_000 < history.nbytes <= 3_500_000
    assert not history.evicted(2) and not history.evicted(99)


def test_byte_history_keeps_the_count_cap_too():
    history = ByteHistory(cap=2, max_bytes=10 << 20)
    for n in range(1, 4):
        history.add(n, _result(n))
    assert len(history) == 2 and 1 not in history
    assert not history.evicted(1)  # dropped by count: the engine may still have it


def test_a_result_bigger_than_the_budget_alone_is_not_kept():
    history = ByteHistory(cap=10, max_bytes=1000)
    history.add(1, _result(1, "small"))
    history.add(2, _result(2, "y" * 5000))
    assert 2 not in history and history.evicted(2)
    assert 1 in history


def test_byte_history_counts_wide_characters_as_what_they_cost():
    narrow, wide = ByteHistory(cap=10, max_bytes=None), ByteHistory(cap=10, max_bytes=None)
    narrow.add(1, _result(1, "a" * 100_000))
    wide.add(1, _result(1, "\U0001F600" * 100_000))  # 4 bytes a character in CPython
    assert wide.nbytes > 3.5 * narrow.nbytes


def test_clearing_the_history_forgets_sizes_and_evictions():
    history = ByteHistory(cap=10, max_bytes=100)
    history.add(1, _result(1, "z" * 1000))
    history.clear()
    assert history.nbytes == 0 and not history.evicted(1) and len(history) == 0


@pytest_twisted.ensureDeferred
async def test_get_result_of_a_result_evicted_for_bytes_raises_result_evicted(make_engine):
    queued = QueuedEngine(make_engine(), history_bytes=300_000)
    numbers = []
    for _ in range(4):
        numbers.append((await queued.execute("print('p' * 100_000)"))["number"])
    assert queued.history.nbytes <= 300_000
    with pytest.raises(ResultEvicted) as info:
        await _wait(queued.get_result(numbers[0]))
    message = str(info.value)
    assert f"command {numbers[0]} on engine" in message
    assert "at most 293 KiB of execute results per engine" in message
    assert "--history-bytes" in message and "sooner" in message
    assert (await _wait(queued.get_result(numbers[-1])))["stdout"] == "p" * 100_000 + "\n"
    queued.set_history_bytes(None)
    for _ in range(4):
        await queued.execute("print('q' * 100_000)")
    assert queued.history.nbytes > 300_000  # no byte bound any more


@pytest_twisted.ensureDeferred
async def test_reset_empties_the_byte_history(make_engine):
    queued = QueuedEngine(make_engine(), history_bytes=1 << 20)
    await queued.execute("print('r' * 1000)")
    assert queued.history.nbytes > 1000
    await _wait(queued.reset())
    assert queued.history.nbytes == 0


@pytest_twisted.ensureDeferred
async def test_cached_result_cannot_be_changed_by_a_caller(pair):
    queued, _ = pair
    first = await queued.execute("a = 1")
    got = await queued.get_result(1)
    got["number"] = 99
    first["input"] = None
    again = await queued.get_result(1)
    assert again["number"] == 1
    assert again["input"]["raw"] == "a = 1"


@pytest_twisted.ensureDeferred
async def test_failed_execute_result_comes_from_the_engine(pair):
    queued, _ = pair
    with pytest.raises(ZeroDivisionError):
        await queued.execute("1/0")
    failed = await queued.get_result(1)
    assert failed["number"] == 1
    assert "traceback" in failed


# --------------------------------------------------------------------------- remove_commands / abandon

@pytest_twisted.ensureDeferred
async def test_remove_commands_fails_only_that_requests_waiting_commands(pair, make_gate):
    queued, _ = pair
    gate = make_gate()
    token = current_request.set("request-A")
    try:
        held = queued.execute(gate.hold_code())  # running: not removed
    finally:
        current_request.reset(token)
    await gate.wait_started()

    token = current_request.set("request-A")
    try:
        a1 = queued.execute("from_a = 1")
        a2 = queued.push({"from_a2": 2})
    finally:
        current_request.reset(token)
    token = current_request.set("request-B")
    try:
        b1 = queued.execute("from_b = 1")
    finally:
        current_request.reset(token)
    untagged = queued.execute("untagged = 1")

    failures = []
    for d in (a1, a2):
        d.addErrback(lambda f: failures.append(f) or None)
    reason = Aborted("request-A was aborted")
    removed = queued.remove_commands("request-A", reason)
    assert removed == 2
    assert [f.value for f in failures] == [reason, reason]
    assert all(f.check(Aborted) for f in failures)
    assert len((await queued.queue_status())["queue"]) == 2
    assert queued.remove_commands("request-A", reason) == 0
    assert queued.remove_commands("no-such-request", reason) == 0

    gate.open()
    await _wait(defer.gatherResults([held, b1, untagged]))
    assert set(await queued.keys()) >= {"from_b", "untagged"}
    assert not {"from_a", "from_a2"} & set(await queued.keys())


@pytest_twisted.ensureDeferred
async def test_current_request_is_read_at_submission(pair, make_gate):
    queued, _ = pair
    gate = make_gate()
    held = queued.execute(gate.hold_code())
    await gate.wait_started()
    token = current_request.set("submitted-under-this")
    d = queued.execute("x = 1")
    current_request.reset(token)
    d.addErrback(lambda f: f.trap(Aborted))
    assert queued.remove_commands(None, Aborted("untagged")) == 0
    assert queued.remove_commands("submitted-under-this", Aborted("tagged")) == 1
    gate.open()
    await _wait(held)


@pytest_twisted.ensureDeferred
async def test_abandon_fails_running_and_waiting_and_drops_the_late_result(
        pair, make_gate, logged_failures):
    queued, service = pair
    gate = make_gate()
    held = queued.execute(gate.hold_code() + "\nlate = 'ran anyway'")
    await gate.wait_started()
    waiting = [queued.execute("w = 1"), queued.get_properties()]
    failures = []
    for d in [held] + waiting:
        d.addErrback(lambda f: failures.append(f) or None)

    lost = EngineError("engine 3 was lost")
    assert queued.abandon(lost) is None
    assert len(failures) == 3
    assert all(f.value is lost for f in failures)
    assert await queued.queue_status() == EMPTY

    # Let the abandoned command finish on the engine; its late result must be dropped quietly.
    gate.open()
    assert await _wait(service.pull("late")) == "ran anyway"
    assert len(failures) == 3
    assert logged_failures == []


# --------------------------------------------------------------------------- failure observers

@pytest_twisted.ensureDeferred
async def test_failure_observers_are_called_and_can_be_removed(pair):
    queued, _ = pair
    calls = []

    def observer(failure, command_repr):
        calls.append((failure, command_repr))

    queued.register_failure_observer(observer)
    with pytest.raises(ZeroDivisionError):
        await queued.execute("1/0")
    await queued.execute("sync = 1")  # a full round after the failure
    mine = [(f, r) for f, r in calls if r == "execute('1/0')"]
    assert len(mine) == 1
    assert mine[0][0].check(ZeroDivisionError)
    assert not [r for _, r in calls if r == "execute('sync = 1')"]

    queued.unregister_failure_observer(observer)
    before = len(calls)
    with pytest.raises(NameError):
        await queued.execute("undefined_zz")
    await queued.execute("sync = 2")
    assert len(calls) == before
    with pytest.raises(ValueError):
        queued.unregister_failure_observer(observer)


@pytest_twisted.ensureDeferred
async def test_a_raising_failure_observer_does_not_break_the_queue(pair, logged_failures):
    queued, _ = pair

    def bad_observer(failure, command_repr):
        raise RuntimeError("observer bug")

    queued.register_failure_observer(bad_observer)
    with pytest.raises(ZeroDivisionError):
        await _wait(queued.execute("1/0"))
    assert (await _wait(queued.execute("still = 'working'")))["number"] == 2
    assert any(f.check(RuntimeError) for f in logged_failures)


# --------------------------------------------------------------------------- interrupt, reset, kill

@pytest_twisted.ensureDeferred
async def test_interrupt_is_not_queued(pair, make_gate):
    queued, _ = pair
    gate = make_gate()
    spinning = queued.execute(gate.spin_code())
    await gate.wait_started()
    waiting = queued.execute("after = 1")
    waiting.addErrback(lambda f: f.trap(QueueCleared) and "cleared")
    interrupted = queued.interrupt()
    assert interrupted.called  # not waiting behind the spinning command
    assert await interrupted is True
    with pytest.raises(KeyboardInterrupt):
        await _wait(spinning)
    assert await _wait(waiting) == "cleared"


@pytest_twisted.ensureDeferred
async def test_reset_clears_the_queue_first_and_wipes_the_cache(pair, make_gate):
    queued, _ = pair
    assert (await queued.execute("a = 1"))["number"] == 1
    gate = make_gate()
    held = queued.execute(gate.hold_code())
    await gate.wait_started()
    waiting = queued.execute("never = 1")
    failures = []
    waiting.addErrback(lambda f: failures.append(f) or None)
    reset = queued.reset()
    assert len(failures) == 1 and failures[0].check(QueueCleared)  # at once, before the reset runs
    assert not reset.called
    gate.open()
    await _wait(held)
    await _wait(reset)
    fresh = await queued.execute("b = 2")
    assert fresh["number"] == 1
    assert (await queued.get_result(1))["input"]["raw"] == "b = 2"
    assert "never" not in await queued.keys()


@pytest_twisted.ensureDeferred
async def test_kill_clears_the_queue_first(pair, make_gate):
    queued, _ = pair
    gate = make_gate()
    held = queued.execute(gate.hold_code())
    await gate.wait_started()
    waiting = queued.push({"never": 1})
    failures = []
    waiting.addErrback(lambda f: failures.append(f) or None)
    killed = queued.kill()
    assert len(failures) == 1 and failures[0].check(QueueCleared)
    gate.open()
    await _wait(held)
    assert await _wait(killed) is None
    with pytest.raises(EngineError):
        await _wait(queued.execute("a = 1"))


# --------------------------------------------------------------------------- pipelined batches

@implementer(IEngineBase)
class ManualEngine:
    """Records each call sent to it; the test fires the Deferreds."""

    id = 0

    def __init__(self):
        self.sent = []

    def _call(self, method, *args):
        d = defer.Deferred()
        self.sent.append((method, args, d))
        return d

    def apply_batch(self, calls):
        return self._call("apply_batch", calls)

    def apply(self, func, args=(), kwargs=None):
        return self._call("apply", func, args)


def test_apply_batches_are_pipelined_up_to_the_depth():
    engine = ManualEngine()
    queued = QueuedEngine(engine)
    results = [queued.apply_batch([("f", (i,), {})]) for i in range(PIPELINE_DEPTH + 1)]
    assert [m for m, _, _ in engine.sent] == ["apply_batch"] * PIPELINE_DEPTH
    status = queued.queue_status().result
    assert len(status["queue"]) == 1 and status["pending"].count("apply_batch") == PIPELINE_DEPTH
    engine.sent[0][2].callback(["first"])
    assert results[0].result == ["first"]
    assert len(engine.sent) == PIPELINE_DEPTH + 1  # the waiting batch went out at once
    for _, _, d in engine.sent[1:]:
        d.callback([])
    assert all(r.called for r in results)
    assert queued.queue_status().result == EMPTY


def test_other_commands_wait_for_running_batches_and_are_not_overtaken():
    engine = ManualEngine()
    queued = QueuedEngine(engine)
    b1 = queued.apply_batch([])
    a = queued.apply("g")
    b2 = queued.apply_batch([])
    assert [m for m, _, _ in engine.sent] == ["apply_batch"]
    engine.sent[0][2].callback([])
    assert [m for m, _, _ in engine.sent] == ["apply_batch", "apply"]
    engine.sent[1][2].callback("applied")
    assert [m for m, _, _ in engine.sent] == ["apply_batch", "apply", "apply_batch"]
    engine.sent[2][2].callback([])
    assert (b1.result, a.result, b2.result) == ([], "applied", [])


def test_a_batch_waits_behind_a_running_plain_command():
    engine = ManualEngine()
    queued = QueuedEngine(engine)
    queued.apply("g")
    queued.apply_batch([])
    assert [m for m, _, _ in engine.sent] == ["apply"]
    engine.sent[0][2].callback(None)
    assert [m for m, _, _ in engine.sent] == ["apply", "apply_batch"]
    engine.sent[1][2].callback([])


def test_abandon_fails_every_pipelined_batch_and_drops_late_outcomes():
    engine = ManualEngine()
    queued = QueuedEngine(engine)
    events = []
    for label in "abc":
        _record(events, label, queued.apply_batch([]), expect=EngineError)
    queued.abandon(EngineError("engine 0 is gone"))
    assert events == [("a", "EngineError"), ("b", "EngineError"), ("c", "EngineError")]
    engine.sent[0][2].callback(["late"])  # ignored
    assert queued.queue_status().result == EMPTY


def test_independent_commands_neither_clear_the_queue_nor_are_cleared():
    engine = ManualEngine()
    queued = QueuedEngine(engine)
    events = []
    _record(events, "user-1", queued.apply("u1"), expect=ValueError)
    token = independent.set(True)
    try:
        _record(events, "task", queued.apply("t"), expect=ValueError)
    finally:
        independent.reset(token)
    _record(events, "user-2", queued.apply("u2"), expect=QueueCleared)
    engine.sent[0][2].errback(ValueError("user command failed"))
    # the user's failure cleared the user's waiting command, not the task's
    assert events == [("user-2", "QueueCleared"), ("user-1", "ValueError")]
    assert [args for _, args, _ in engine.sent] == [("u1", ()), ("t", ())]
    _record(events, "user-3", queued.apply("u3"))
    engine.sent[1][2].errback(ValueError("task failed"))
    # the task's failure cleared nothing
    assert events[-1] == ("task", "ValueError")
    assert [args for _, args, _ in engine.sent][-1] == ("u3", ())
    engine.sent[2][2].callback("ok")
    assert events[-1] == ("user-3", "ok")


def test_copy_plain_copies_as_deep_as_deepcopy():
    class Thing:
        def __init__(self):
            self.items = [1]

    original = {"n": 1, "input": {"raw": "a=1"}, "l": [1, (2, [3])], "t": Thing(), "b": b"x"}
    copied = copy_plain(original)
    assert copied["n"] == 1 and copied["input"] == {"raw": "a=1"} and copied["l"] == [1, (2, [3])]
    assert copied["input"] is not original["input"] and copied["l"][1][1] is not original["l"][1][1]
    assert copied["t"] is not original["t"] and copied["t"].items == [1]


@pytest.mark.parametrize("result", [
    {"number": 3, "input": {"raw": "a=1", "translated": "a=1"}, "id": 0},
    {"number": 4, "input": {"raw": "print(1)", "translated": "print(1)"}, "id": 2,
     "stdout": "1\n", "stderr": "é" * 40, "display": {"pprint": "2", "repr": "2"}},
    {"number": 5, "input": {"raw": "x", "translated": "x"}, "ok": True, "t": 1.5, "n": None},
    {"number": 6, "traceback": {"plain": "Traceback ..."}, "nested": {"a": [1, 2]}},
    {"number": 7, 8: "a non-str key"},
    {"number": 8, "parts": ["a", "list"]},
])
def test_a_kept_copy_is_copy_plain_and_its_estimate(result):
    from ipkernel import sizes
    from ipkernel.engine.queued import kept_copy
    copy, size = kept_copy(result)
    assert copy == copy_plain(result) and copy is not result
    assert size == sizes.estimate(result)
    for key, value in result.items():
        if isinstance(value, (dict, list)):
            assert copy[key] is not value   # nothing shared with the delivered result
