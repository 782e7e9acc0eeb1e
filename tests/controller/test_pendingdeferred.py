"""Tier 1: PendingDeferredManager, two_phase and the SynchronousMultiEngine wrapper."""
import inspect
import re

import pytest
import pytest_twisted
from twisted.internet import defer, task
from zope.interface.verify import verifyObject

from ipkernel.controller.pending import PendingDeferredManager, two_phase
from ipkernel.controller.synchronous import SynchronousMultiEngine
from ipkernel.engine.queued import current_request
from ipkernel.error import (Aborted, AbortedPendingDeferredError, InvalidDeferredID,
                            ResultEvicted, ResultNotCompleted)
from ipkernel.interfaces.multiengine import IFullSynchronousMultiEngine, ISynchronousMultiEngine

pytestmark = pytest.mark.tier1

HEX40 = re.compile(r"[0-9a-f]{40}")


class Boom(Exception):
    pass


@pytest.fixture
def pdm():
    return PendingDeferredManager()


def fired(d):
    """Return ``d`` after checking it has fired, so awaiting it cannot hang."""
    assert d.called, "the Deferred has not fired"
    return d


def outcomes(d):
    """Record what ``d`` fires with, without consuming a failure's type."""
    seen = []
    d.addBoth(seen.append)
    return seen


# --- ids -------------------------------------------------------------------

@pytest_twisted.ensureDeferred
async def test_ten_saved_ids_are_known_distinct_and_40_hex(pdm):
    deferreds = [defer.Deferred() for _ in range(10)]
    ids = [pdm.save_pending_deferred(d) for d in deferreds]
    assert len(set(ids)) == 10
    assert all(isinstance(i, str) and HEX40.fullmatch(i) for i in ids)
    assert all(pdm.quick_has_id(i) for i in ids)
    assert not pdm.quick_has_id("0" * 40)
    assert not pdm.quick_has_id(["not", "hashable"])

    waiter = pdm.get_pending_deferred(ids[0], block=True)
    assert not waiter.called
    deferreds[0].callback("first")
    assert await fired(waiter) == "first"

    with pytest.raises(ResultNotCompleted):
        await fired(pdm.get_pending_deferred(ids[1], block=False))
    deferreds[1].callback("second")
    assert await fired(pdm.get_pending_deferred(ids[1], block=False)) == "second"
    for i, d in zip(ids[2:], deferreds[2:]):
        d.callback(i)
        assert await fired(pdm.get_pending_deferred(i)) == i


def test_get_deferred_id_is_new_each_time(pdm):
    ids = {pdm.get_deferred_id() for _ in range(100)}
    assert len(ids) == 100
    assert all(HEX40.fullmatch(i) for i in ids)


def test_save_under_a_given_id_and_refuse_one_in_use(pdm):
    assert pdm.save_pending_deferred(defer.Deferred(), "my-id") == "my-id"
    assert pdm.quick_has_id("my-id")
    with pytest.raises(ValueError, match="my-id"):
        pdm.save_pending_deferred(defer.Deferred(), "my-id")
    with pytest.raises(TypeError):
        pdm.save_pending_deferred("not a Deferred")


# --- fetching --------------------------------------------------------------

@pytest_twisted.ensureDeferred
async def test_get_after_callback_delivers_once(pdm):
    d = defer.Deferred()
    i = pdm.save_pending_deferred(d)
    d.callback(5)
    assert await fired(pdm.get_pending_deferred(i, block=False)) == 5
    assert not pdm.quick_has_id(i)
    with pytest.raises(InvalidDeferredID):
        await fired(pdm.get_pending_deferred(i, block=True))


@pytest_twisted.ensureDeferred
async def test_get_before_callback_delivers_once(pdm):
    d = defer.Deferred()
    i = pdm.save_pending_deferred(d)
    waiter = pdm.get_pending_deferred(i, block=True)
    assert pdm.quick_has_id(i)
    d.callback(6)
    assert await fired(waiter) == 6
    assert not pdm.quick_has_id(i)
    with pytest.raises(InvalidDeferredID):
        await fired(pdm.get_pending_deferred(i, block=False))


@pytest_twisted.ensureDeferred
async def test_get_after_errback_fails_with_the_original_error(pdm):
    d = defer.Deferred()
    i = pdm.save_pending_deferred(d)
    d.errback(Boom("late"))
    with pytest.raises(Boom, match="late"):
        await fired(pdm.get_pending_deferred(i, block=False))
    assert not pdm.quick_has_id(i)


@pytest_twisted.ensureDeferred
async def test_get_before_errback_fails_with_the_original_error(pdm):
    d = defer.Deferred()
    i = pdm.save_pending_deferred(d)
    waiter = pdm.get_pending_deferred(i, block=True)
    d.errback(Boom("early"))
    with pytest.raises(Boom, match="early"):
        await fired(waiter)
    assert not pdm.quick_has_id(i)


@pytest_twisted.ensureDeferred
async def test_none_is_a_deliverable_result(pdm):
    before, after = defer.Deferred(), defer.Deferred()
    i_before = pdm.save_pending_deferred(before)
    i_after = pdm.save_pending_deferred(after)
    waiter = pdm.get_pending_deferred(i_before, block=True)
    seen = outcomes(waiter)
    before.callback(None)
    assert seen == [None]
    after.callback(None)
    seen = outcomes(pdm.get_pending_deferred(i_after, block=False))
    assert seen == [None]
    assert not pdm.quick_has_id(i_before) and not pdm.quick_has_id(i_after)


@pytest_twisted.ensureDeferred
async def test_not_ready_and_not_blocking_fails_result_not_completed(pdm):
    i = pdm.save_pending_deferred(defer.Deferred())
    with pytest.raises(ResultNotCompleted, match=i):
        await fired(pdm.get_pending_deferred(i, block=False))
    assert pdm.quick_has_id(i)  # still there for a later fetch


@pytest_twisted.ensureDeferred
async def test_second_blocking_get_while_one_waits_fails(pdm):
    d = defer.Deferred()
    i = pdm.save_pending_deferred(d)
    first = pdm.get_pending_deferred(i, block=True)
    with pytest.raises(InvalidDeferredID, match="already being waited"):
        await fired(pdm.get_pending_deferred(i, block=True))
    d.callback("only once")
    assert await fired(first) == "only once"


@pytest_twisted.ensureDeferred
async def test_cancelled_waiter_lets_someone_else_wait(pdm):
    d = defer.Deferred()
    i = pdm.save_pending_deferred(d)
    first = pdm.get_pending_deferred(i, block=True)
    first.cancel()
    with pytest.raises(defer.CancelledError):
        await fired(first)
    second = pdm.get_pending_deferred(i, block=True)
    d.callback("for the second")
    assert await fired(second) == "for the second"


@pytest_twisted.ensureDeferred
async def test_unknown_id_fails_invalid_deferred_id(pdm):
    for bad in ("nope", 42, None):
        d = pdm.get_pending_deferred(bad, block=True)  # a failed Deferred, not a raise
        with pytest.raises(InvalidDeferredID, match="unknown deferred id"):
            await fired(d)


# --- shaping the stored value -----------------------------------------------

@pytest_twisted.ensureDeferred
async def test_callbacks_added_before_saving_shape_the_value(pdm):
    d = defer.Deferred()
    d.addCallback(lambda x: 2 * x)
    i = pdm.save_pending_deferred(d)
    d.addCallback(lambda x: ("after saving", x))
    d.callback(21)
    assert await fired(pdm.get_pending_deferred(i)) == 42
    # the saved Deferred's own chain carries None after the manager's callback
    assert d.result == ("after saving", None)


@pytest_twisted.ensureDeferred
async def test_errbacks_added_before_saving_apply(pdm):
    d = defer.Deferred()
    d.addErrback(lambda f: ("recovered", f.trap(Boom).__name__))
    i = pdm.save_pending_deferred(d)
    d.errback(Boom())
    assert await fired(pdm.get_pending_deferred(i)) == ("recovered", "Boom")

    d2 = defer.Deferred()
    d2.addCallback(lambda _: 1 / 0)
    i2 = pdm.save_pending_deferred(d2)
    d2.callback(None)
    with pytest.raises(ZeroDivisionError):
        await fired(pdm.get_pending_deferred(i2))


@pytest_twisted.ensureDeferred
async def test_nested_deferred_completes_with_the_inner_value(pdm):
    outer, inner = defer.Deferred(), defer.Deferred()
    outer.addCallback(lambda _: inner)
    i = pdm.save_pending_deferred(outer)
    outer.callback(None)
    with pytest.raises(ResultNotCompleted):
        await fired(pdm.get_pending_deferred(i, block=False))
    inner.callback("inner value")
    assert await fired(pdm.get_pending_deferred(i, block=False)) == "inner value"


# --- deleting and clearing ----------------------------------------------------

@pytest_twisted.ensureDeferred
async def test_delete_forgets_the_id_and_drops_a_late_outcome(pdm):
    d = defer.Deferred()
    i = pdm.save_pending_deferred(d)
    assert pdm.delete_pending_deferred(i) is None
    assert not pdm.quick_has_id(i)
    d.errback(Boom("nobody wants this"))  # must not resurrect the id nor stay unhandled
    assert d.result is None
    with pytest.raises(InvalidDeferredID):
        await fired(pdm.get_pending_deferred(i))


def test_delete_unknown_id_raises_synchronously(pdm):
    with pytest.raises(InvalidDeferredID):
        pdm.delete_pending_deferred("0" * 40)


@pytest_twisted.ensureDeferred
async def test_delete_while_waiting_fails_the_waiter(pdm):
    i = pdm.save_pending_deferred(defer.Deferred())
    waiter = pdm.get_pending_deferred(i, block=True)
    pdm.delete_pending_deferred(i)
    with pytest.raises(AbortedPendingDeferredError, match=i):
        await fired(waiter)


@pytest_twisted.ensureDeferred
async def test_clear_forgets_all_ten_ids_and_fails_waiters(pdm):
    deferreds = [defer.Deferred() for _ in range(10)]
    ids = [pdm.save_pending_deferred(d) for d in deferreds]
    for d in deferreds[:4]:
        d.callback("done")
    waiters = [pdm.get_pending_deferred(i, block=True) for i in ids[4:7]]

    assert await fired(pdm.clear_pending_deferreds()) is None

    assert [i for i in ids if pdm.quick_has_id(i)] == []
    for waiter in waiters:
        with pytest.raises(AbortedPendingDeferredError):
            await fired(waiter)
    for i in ids:
        with pytest.raises(InvalidDeferredID):
            await fired(pdm.get_pending_deferred(i, block=False))
    for d in deferreds[4:]:
        d.callback("late")  # late outcomes of cleared ids are dropped
    assert [i for i in ids if pdm.quick_has_id(i)] == []


# --- max_pending ----------------------------------------------------------------

@pytest_twisted.ensureDeferred
async def test_max_pending_discards_the_oldest_finished_unfetched_result():
    pdm = PendingDeferredManager(max_pending=2)
    first, second, third, running = (defer.Deferred() for _ in range(4))
    ids = [pdm.save_pending_deferred(d) for d in (first, second, third, running)]
    # finishing order, not saving order, decides which is oldest
    second.callback("second")
    first.callback("first")
    assert all(pdm.quick_has_id(i) for i in ids)
    third.callback("third")

    assert not pdm.quick_has_id(ids[1])
    with pytest.raises(InvalidDeferredID) as info:
        await fired(pdm.get_pending_deferred(ids[1]))
    message = str(info.value)
    assert ids[1] in message and "discarded" in message
    assert "max_pending=2" in message and "Fetch results sooner" in message

    # an unfinished call is not counted and is kept
    assert pdm.quick_has_id(ids[3])
    assert await fired(pdm.get_pending_deferred(ids[0])) == "first"
    assert await fired(pdm.get_pending_deferred(ids[2])) == "third"


@pytest_twisted.ensureDeferred
async def test_max_pending_does_not_count_fetched_or_awaited_results():
    pdm = PendingDeferredManager(max_pending=1)
    a, b, c = defer.Deferred(), defer.Deferred(), defer.Deferred()
    ia, ib, ic = (pdm.save_pending_deferred(d) for d in (a, b, c))
    a.callback("a")
    assert await fired(pdm.get_pending_deferred(ia)) == "a"
    waiter = pdm.get_pending_deferred(ib, block=True)
    b.callback("b")
    c.callback("c")
    assert await fired(waiter) == "b"
    assert await fired(pdm.get_pending_deferred(ic)) == "c"


@pytest.mark.parametrize("bad, error", [(0, ValueError), (-3, ValueError),
                                        (1.5, TypeError), (True, TypeError)])
def test_max_pending_must_be_a_positive_int(bad, error):
    with pytest.raises(error):
        PendingDeferredManager(max_pending=bad)


# --- byte budget, expiry, close ----------------------------------------------------

MB = 1 << 20


def _settled(pdm, *values):
    """Save and finish one Deferred per value; their ids."""
    ids = []
    for value in values:
        d = defer.Deferred()
        ids.append(pdm.save_pending_deferred(d))
        d.callback(value)
    return ids


@pytest_twisted.ensureDeferred
async def test_unfetched_results_are_bounded_in_bytes_oldest_discarded_first():
    dropped = []
    pdm = PendingDeferredManager(max_bytes=7 * MB // 2, on_discard=dropped.append)
    values = [[b"%d" % k * MB] for k in range(5)]  # 1 MB each
    ids = _settled(pdm, *values)
    assert 3 * MB < pdm.unfetched_bytes <= 7 * MB // 2
    assert [pdm.quick_has_id(i) for i in ids] == [False, False, True, True, True]
    assert dropped == values[:2]  # whoever keeps data for them elsewhere is told
    with pytest.raises(ResultEvicted) as info:
        await fired(pdm.get_pending_deferred(ids[0]))
    message = str(info.value)
    assert ids[0] in message and "budget of 3.5 MiB" in message
    assert "oldest are discarded first" in message and "--unfetched-bytes" in message
    assert await fired(pdm.get_pending_deferred(ids[4])) == values[4]
    assert 2 * MB < pdm.unfetched_bytes < 2 * MB + 4096  # fetched ones stop counting


@pytest_twisted.ensureDeferred
async def test_a_result_bigger_than_the_budget_alone_is_discarded_and_says_so():
    pdm = PendingDeferredManager(max_bytes=MB)
    small, big = _settled(pdm, "s", [b"b" * (2 * MB)])
    assert pdm.quick_has_id(small) and not pdm.quick_has_id(big)
    with pytest.raises(ResultEvicted, match="alone .* is bigger than the 1 MiB"):
        await fired(pdm.get_pending_deferred(big))


@pytest_twisted.ensureDeferred
async def test_a_blocked_fetch_is_not_limited_by_the_budget():
    pdm = PendingDeferredManager(max_bytes=MB)
    d = defer.Deferred()
    deferred_id = pdm.save_pending_deferred(d)
    waiter = pdm.get_pending_deferred(deferred_id, block=True)
    d.callback(b"w" * (5 * MB))
    assert len(await fired(waiter)) == 5 * MB
    assert pdm.unfetched_bytes == 0


@pytest_twisted.ensureDeferred
async def test_unfetched_results_expire_after_ttl_on_the_injected_clock():
    clock = task.Clock()
    dropped = []
    pdm = PendingDeferredManager(ttl=600, clock=clock.seconds, on_discard=dropped.append)
    old = _settled(pdm, "old")[0]
    clock.advance(400)
    young = _settled(pdm, "young")[0]
    running = pdm.save_pending_deferred(defer.Deferred())
    clock.advance(200.5)  # "old" has waited 600.5 s, "young" 200.5 s
    assert pdm.expire() == 1
    assert dropped == ["old"]
    with pytest.raises(ResultEvicted) as info:
        await fired(pdm.get_pending_deferred(old))
    assert "more than 600 s" in str(info.value) and "--result-ttl" in str(info.value)
    assert pdm.quick_has_id(young) and pdm.quick_has_id(running)  # unfinished: no age
    clock.advance(400)
    # no sweep needed: looking an id up expires what is stale
    with pytest.raises(ResultEvicted):
        await fired(pdm.get_pending_deferred(young))
    assert pdm.unfetched_bytes == 0 and pdm.quick_has_id(running)


def test_limits_are_copied_for_a_new_session():
    clock = task.Clock()
    pdm = PendingDeferredManager(3, max_bytes=MB, ttl=5, clock=clock.seconds)
    twin = PendingDeferredManager(**pdm.limits())
    assert (twin.max_pending, twin.max_bytes, twin.ttl) == (3, MB, 5)
    assert twin.clock is pdm.clock


@pytest.mark.parametrize("kwargs, error", [({"max_bytes": 0}, ValueError),
                                           ({"max_bytes": "1M"}, TypeError),
                                           ({"ttl": -1}, ValueError)])
def test_bad_limits_are_refused(kwargs, error):
    with pytest.raises(error):
        PendingDeferredManager(**kwargs)


@pytest_twisted.ensureDeferred
async def test_close_drops_everything_kept_and_late_outcomes_too():
    dropped = []
    pdm = PendingDeferredManager(on_discard=dropped.append)
    done = _settled(pdm, "kept")[0]
    late = defer.Deferred()
    waited = defer.Deferred()
    pdm.save_pending_deferred(late)
    waiter = pdm.get_pending_deferred(pdm.save_pending_deferred(waited), block=True)
    pdm.close("its client disconnected")
    assert dropped == ["kept"] and pdm.unfetched_bytes == 0
    with pytest.raises(AbortedPendingDeferredError, match="its client disconnected"):
        await fired(waiter)
    late.callback("late")
    assert dropped == ["kept", "late"]  # nobody will fetch it: its data is freed
    with pytest.raises(InvalidDeferredID):
        await fired(pdm.get_pending_deferred(done))


def test_delete_and_clear_tell_on_discard():
    dropped = []
    pdm = PendingDeferredManager(on_discard=dropped.append)
    a, b = _settled(pdm, "a", "b")
    pdm.delete_pending_deferred(a)
    pdm.clear_pending_deferreds()
    assert dropped == ["a", "b"]


def test_synchronous_multiengine_takes_the_limits():
    sme = SynchronousMultiEngine(object(), max_bytes=MB, ttl=10)
    assert (sme.max_bytes, sme.ttl) == (MB, 10)


# --- abort_pending ----------------------------------------------------------------

@pytest_twisted.ensureDeferred
async def test_abort_pending_fails_a_waiter_at_once_and_drops_the_late_outcome(pdm):
    d = defer.Deferred()
    i = pdm.save_pending_deferred(d)
    waiter = pdm.get_pending_deferred(i, block=True)
    assert pdm.abort_pending(i, Aborted("stop it")) is True
    assert waiter.called
    with pytest.raises(Aborted, match="stop it"):
        await fired(waiter)
    assert not pdm.quick_has_id(i)
    d.callback("too late")
    assert not pdm.quick_has_id(i)
    assert d.result is None


@pytest_twisted.ensureDeferred
async def test_abort_pending_without_waiter_stores_the_failure(pdm):
    d = defer.Deferred()
    i = pdm.save_pending_deferred(d)
    assert pdm.abort_pending(i, Aborted("stopped")) is True
    d.callback("too late")  # the real outcome does not replace the abort
    with pytest.raises(Aborted, match="stopped"):
        await fired(pdm.get_pending_deferred(i, block=False))


@pytest_twisted.ensureDeferred
async def test_abort_pending_of_a_finished_call_keeps_the_result(pdm):
    d = defer.Deferred()
    i = pdm.save_pending_deferred(d)
    d.callback("kept")
    assert pdm.abort_pending(i, Aborted("too late")) is False
    assert await fired(pdm.get_pending_deferred(i, block=False)) == "kept"


def test_abort_pending_of_an_unknown_id_raises(pdm):
    with pytest.raises(InvalidDeferredID):
        pdm.abort_pending("f" * 40, Aborted())


# --- two_phase ----------------------------------------------------------------------

class Recorder:
    def __init__(self):
        self.forgotten = []

    def forget_request(self, request_id):
        self.forgotten.append(request_id)


class Service(PendingDeferredManager):
    def __init__(self):
        super().__init__()
        self.multiengine = Recorder()
        self.seen_requests = []
        self.pending = []

    @two_phase
    def work(self, x, y=1):
        """Fire with x + y."""
        self.seen_requests.append(current_request.get())
        d = defer.Deferred()
        self.pending.append((d, x + y))
        return d

    @two_phase
    def explode(self):
        raise Boom("synchronous")

    def finish(self):
        for d, value in self.pending:
            d.callback(value)
        self.pending = []


@pytest_twisted.ensureDeferred
async def test_two_phase_block_true_returns_the_methods_deferred():
    service = Service()
    d = service.work(1, y=2)
    assert not d.called
    assert service.seen_requests == [None]
    service.finish()
    assert await fired(d) == 3
    assert service.multiengine.forgotten == []


@pytest_twisted.ensureDeferred
async def test_two_phase_block_false_fires_with_an_id_set_as_current_request():
    service = Service()
    deferred_id = await fired(service.work(4, block=False))
    assert HEX40.fullmatch(deferred_id)
    assert service.seen_requests == [deferred_id]
    assert current_request.get() is None  # reset after the call
    assert service.quick_has_id(deferred_id)
    with pytest.raises(ResultNotCompleted):
        await fired(service.get_pending_deferred(deferred_id, block=False))
    assert service.multiengine.forgotten == []
    service.finish()
    assert service.multiengine.forgotten == [deferred_id]
    assert await fired(service.get_pending_deferred(deferred_id)) == 5


@pytest_twisted.ensureDeferred
async def test_two_phase_restores_an_outer_current_request():
    service = Service()
    token = current_request.set("outer")
    try:
        inner = await fired(service.work(0, block=False))
        assert current_request.get() == "outer"
    finally:
        current_request.reset(token)
    assert service.seen_requests == [inner]
    service.finish()


@pytest_twisted.ensureDeferred
@pytest.mark.parametrize("block", [1, 0, None, "no"])
async def test_two_phase_block_must_be_a_bool(block):
    service = Service()
    d = service.work(1, block=block)  # a failed Deferred, not a raise
    with pytest.raises(TypeError, match="block must be True or False"):
        await fired(d)
    assert service.seen_requests == []


@pytest_twisted.ensureDeferred
async def test_two_phase_synchronous_error_becomes_a_failure():
    service = Service()
    with pytest.raises(Boom):
        await fired(service.explode())
    deferred_id = await fired(service.explode(block=False))
    with pytest.raises(Boom, match="synchronous"):
        await fired(service.get_pending_deferred(deferred_id))
    assert service.multiengine.forgotten == [deferred_id]


def test_two_phase_keeps_name_doc_and_shows_block_in_the_signature():
    assert Service.work.__name__ == "work"
    assert Service.work.__doc__ == "Fire with x + y."
    assert str(inspect.signature(Service.work)) == "(self, x, y=1, *, block=True)"


# --- SynchronousMultiEngine over a fake multi-engine ---------------------------------

class FakeMultiEngine:
    """Records calls; each returns a Deferred the test fires."""

    def __init__(self):
        self.calls = []
        self.pending = {}
        self.aborted = []
        self.forgotten = []

    def __getattr__(self, name):
        def call(*args, **kwargs):
            self.calls.append((name, args, kwargs, current_request.get()))
            d = self.pending[name] = defer.Deferred()
            return d
        return call

    def get_ids(self):
        return [0, 1]

    def abort_request(self, request_id):
        self.aborted.append(request_id)
        return 1

    def forget_request(self, request_id):
        self.forgotten.append(request_id)


@pytest.fixture
def fake():
    return FakeMultiEngine()


@pytest.fixture
def sme(fake):
    return SynchronousMultiEngine(fake)


def test_synchronous_multiengine_provides_the_full_interface(sme):
    assert verifyObject(IFullSynchronousMultiEngine, sme)
    assert verifyObject(ISynchronousMultiEngine, sme)
    assert str(inspect.signature(SynchronousMultiEngine.execute)) == \
        "(self, lines, targets='all', *, block=True)"
    assert "block=False" in SynchronousMultiEngine.scatter.__doc__


@pytest_twisted.ensureDeferred
async def test_methods_forward_their_arguments(sme, fake):
    d = sme.get_result(3, targets=[1])
    fake.pending["get_result"].callback(["r"])
    assert await fired(d) == ["r"]
    d = sme.map(len, "ab", "cd", dist="r", targets=[0, 1])
    fake.pending["map"].callback([2, 2])
    assert await fired(d) == [2, 2]
    assert fake.calls == [("get_result", (3,), {"targets": [1]}, None),
                          ("map", (len, "ab", "cd"), {"dist": "r", "targets": [0, 1]}, None)]


@pytest_twisted.ensureDeferred
async def test_non_blocking_call_tags_the_request_and_forgets_it_when_done(sme, fake):
    deferred_id = await fired(sme.execute("a = 1", targets="all", block=False))
    assert fake.calls == [("execute", ("a = 1",), {"targets": "all"}, deferred_id)]
    fake.pending["execute"].callback([{"number": 1}])
    assert fake.forgotten == [deferred_id]
    assert await fired(sme.get_pending_deferred(deferred_id, block=False)) == [{"number": 1}]


@pytest_twisted.ensureDeferred
async def test_get_ids_is_never_two_phase(sme):
    assert await fired(sme.get_ids()) == [0, 1]
    with pytest.raises(TypeError):
        sme.get_ids(block=False)


@pytest_twisted.ensureDeferred
async def test_abort_of_an_unfinished_call(sme, fake):
    deferred_id = await fired(sme.execute("slow()", block=False))
    waiter = sme.get_pending_deferred(deferred_id, block=True)
    assert await fired(sme.abort(deferred_id)) is True
    assert fake.aborted == [deferred_id]
    with pytest.raises(Aborted, match=deferred_id):
        await fired(waiter)
    fake.pending["execute"].callback(["finished anyway"])
    assert fake.forgotten == [deferred_id]
    assert not sme.quick_has_id(deferred_id)


@pytest_twisted.ensureDeferred
async def test_abort_of_a_finished_call_keeps_its_result(sme, fake):
    deferred_id = await fired(sme.execute("fast()", block=False))
    fake.pending["execute"].callback(["done"])
    assert await fired(sme.abort(deferred_id)) is False
    assert fake.aborted == []
    assert await fired(sme.get_pending_deferred(deferred_id)) == ["done"]


@pytest_twisted.ensureDeferred
async def test_abort_of_an_unknown_id_fails(sme, fake):
    d = sme.abort("0" * 40)  # a failed Deferred, not a raise
    with pytest.raises(InvalidDeferredID):
        await fired(d)
    assert fake.aborted == []
