"""Tier 1: the engine's live output (issue 16): the per-thread tee of the
output router and the OutputOutlet that batches writes for the controller."""
import io
import sys
import threading

import pytest
from twisted.internet import defer, task

from outputstub import OutputReceiver

from ipkernel.engine.capture import capture, publishing
from ipkernel.engine.outlet import LaneOrFoolscap, OutputOutlet, pack_chunks

pytestmark = pytest.mark.tier1


class Reactor(task.Clock):
    """A Clock whose callFromThread runs the call at once."""

    def callFromThread(self, f, *args):
        f(*args)


Target = OutputReceiver   # the controller's inlet, seen from the engine


def outlet_with(target, **kwargs):
    reactor = Reactor()
    outlet = OutputOutlet(reactor, **kwargs)
    outlet.target = target
    return outlet, reactor


def test_a_thread_publishing_sees_its_own_writes_and_they_still_go_where_they_went():
    seen = []
    with capture() as (out, err):
        with publishing(lambda name, text: seen.append((name, text))):
            print("hello")
            print("oops", file=sys.stderr)
        print("after")
    assert seen == [("stdout", "hello"), ("stdout", "\n"), ("stderr", "oops"), ("stderr", "\n")]
    assert out.getvalue() == "hello\nafter\n" and err.getvalue() == "oops\n"


def test_publishing_is_per_thread_and_nested_blocks_restore_the_outer_callback():
    outer, inner = [], []
    with publishing(lambda n, t: outer.append(t)):
        with publishing(lambda n, t: inner.append(t)):
            sys.stdout.write("in")
        sys.stdout.write("out")

        def elsewhere():
            with capture():
                sys.stdout.write("thread")
        worker = threading.Thread(target=elsewhere)
        worker.start()
        worker.join(10)
    assert inner == ["in"] and outer == ["out"]   # not the other thread's "thread"


def test_writes_are_gathered_and_sent_in_one_message_after_the_delay():
    target = Target()
    outlet, reactor = outlet_with(target, delay=0.05)
    outlet.write("stdout", "a")
    outlet.write("stdout", "b\n")
    outlet.write("stderr", "c")
    assert target.messages == []
    reactor.advance(0.05)
    assert target.messages == [[("stdout", "ab\n"), ("stderr", "c")]]


def test_one_message_travels_at_a_time_and_the_rest_follows_its_answer():
    target = Target()
    outlet, reactor = outlet_with(target, delay=0.05)
    outlet.write("stdout", "1")
    reactor.advance(0.05)
    outlet.write("stdout", "2")
    outlet.write("stdout", "3")
    reactor.advance(1)
    assert len(target.messages) == 1       # the first is not answered yet
    target.answer_all()
    assert target.messages[1] == [("stdout", "23")]


def test_settle_sends_at_once_and_settles_only_what_was_written():
    target = Target()
    outlet, reactor = outlet_with(target, delay=10)
    outlet.settle()                         # nothing written: nothing sent
    assert target.messages == []
    outlet.write("stdout", "x")
    outlet.settle()                         # (this test runs in the reactor thread)
    assert target.messages == [[("stdout", "x")]]


def test_beyond_max_pending_the_oldest_output_is_dropped_with_a_note():
    target = Target()
    outlet, reactor = outlet_with(target, delay=0.05, max_pending=10)
    for k in range(5):
        outlet.write("stdout", f"line{k}\n")   # 6 characters each
    reactor.advance(0.05)
    (message,) = target.messages
    assert message[0][0] == "stderr" and "24 characters of output were dropped" in message[0][1]
    assert message[1:] == [("stdout", "line4\n")]


def test_without_a_target_nothing_is_kept():
    outlet, reactor = outlet_with(None)
    outlet.write("stdout", "lost")
    outlet.settle()
    assert outlet._pending == []


def test_a_failed_send_is_not_retried_and_releases_settle():
    class Failing(Target):
        def callRemote(self, method, chunks):
            self.messages.append(chunks)
            return defer.fail(ConnectionError("gone"))
    target = Failing()
    outlet, reactor = outlet_with(target)
    outlet.write("stdout", "x")
    outlet.settle()
    assert len(target.messages) == 1 and not outlet._inflight and outlet._waiters == []


def test_pack_chunks_joins_neighbours_and_cuts_long_texts():
    assert pack_chunks([("stdout", "a"), ("stdout", "b"), ("stderr", "c"), ("stdout", "d")]) == \
        [("stdout", "ab"), ("stderr", "c"), ("stdout", "d")]
    assert pack_chunks([("stdout", "x" * 5)], max_text=2) == \
        [("stdout", "xx"), ("stdout", "xx"), ("stdout", "x")]


def test_lane_or_foolscap_prefers_the_joined_lane():
    class Lane(Target):
        joined = True
    lane, rref = Lane(), Target()

    class Link:
        def __init__(self, lane):
            self.lane = lane

        @property
        def lane_joined(self):
            return self.lane is not None and self.lane.joined
    link = Link(lane)
    carrier = LaneOrFoolscap(link, rref)
    carrier.callRemote("output", [("stdout", "1")])
    lane.joined = False
    carrier.callRemote("output", [("stdout", "2")])
    assert lane.messages == [[("stdout", "1")]] and rref.messages == [[("stdout", "2")]]


def test_engine_service_publishes_execute_apply_and_map_output(monkeypatch):
    from ipkernel.engine.service import EngineService

    target = Target()
    outlet, reactor = outlet_with(target, delay=10)
    service = EngineService()
    service.outlet = outlet
    result = service._execute("print('run')")
    assert result["stdout"] == "run\n"
    service._apply(lambda: print("applied"), (), None)
    service._starmap(lambda x: print("mapped", x), [(1,)])
    sent = "".join(text for message in target.messages for _, text in message)
    assert sent == "run\napplied\nmapped 1\n"
    stream = io.StringIO()
    monkeypatch.setattr(sys, "stdout", stream)
    service.outlet = None          # no controller: apply output goes where it always went
    service._apply(lambda: print("to the log"), (), None)
    assert "to the log" in stream.getvalue()
