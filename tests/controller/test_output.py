"""Tier 1: live output on the controller (issue 16): which client gets an
engine's output, the forwarder's bounds, and answers held until their output
reached the client."""
import pytest
from twisted.internet import defer, task

from outputstub import OutputReceiver

from ipkernel.controller.output import (EngineOutputInlet, OutputForwarder, is_listener, route)
from ipkernel.engine.queued import QueuedEngine, current_output, current_request
from ipkernel.interfaces.engine import IEngineBase
from ipkernel.interfaces.remote import RIOutputListener
from zope.interface import implementer

pytestmark = pytest.mark.tier1


class Listener(OutputReceiver):
    """A client listener stand-in."""

    def texts(self, call_id=None):
        return "".join(text for message in self.messages for c, _, _, text in message
                       if call_id is None or c == call_id)


def forwarder(**kwargs):
    listener = Listener()
    clock = task.Clock()
    return OutputForwarder(listener, clock=clock, **kwargs), listener, clock


def test_chunks_go_to_the_listener_tagged_one_message_at_a_time():
    fwd, listener, _ = forwarder()
    fwd.forward("call-a", 0, [("stdout", "one\n")])
    fwd.forward("call-a", 1, [("stderr", "two\n")])
    fwd.forward("call-b", 0, [("stdout", "three\n")])
    assert listener.messages == [[("call-a", 0, "stdout", "one\n")]]
    listener.answer()
    assert listener.messages[1] == [("call-a", 1, "stderr", "two\n"),
                                    ("call-b", 0, "stdout", "three\n")]


def test_a_call_over_its_cap_loses_its_oldest_output_with_a_note():
    fwd, listener, _ = forwarder(call_cap=12)
    fwd.forward("c", 0, [("stdout", "first\n")])          # sent at once
    for k in range(4):
        fwd.forward("c", 0, [("stdout", f"more{k}\n")])   # 6 characters each: waits
    listener.answer()
    second = listener.messages[1]
    assert second[0][2] == "stderr" and "12 characters of output were dropped" in second[0][3]
    assert [text for _, _, _, text in second[1:]] == ["more2\n", "more3\n"]


def test_the_session_cap_bounds_all_calls_together():
    fwd, listener, _ = forwarder(call_cap=100, session_cap=12)
    fwd.forward("x", 0, [("stdout", "go\n")])              # in flight
    for call_id in ("a", "b", "c"):
        fwd.forward(call_id, 0, [("stdout", "12345\n")])
    assert fwd._total <= 12
    listener.answer()
    assert "dropped" in listener.texts("a") and listener.texts("c") == "12345\n"


def test_settled_is_none_without_output_and_fires_once_the_output_arrived():
    fwd, listener, clock = forwarder()
    assert fwd.settled("c") is None
    fwd.forward("c", 0, [("stdout", "x")])
    d = fwd.settled("c")
    assert not d.called
    listener.answer()
    assert d.called and fwd.settled("c") is None


def test_settled_gives_up_after_its_timeout():
    fwd, listener, clock = forwarder(settle_timeout=5)
    fwd.forward("c", 0, [("stdout", "x")])
    d = fwd.settled("c")
    clock.advance(4.9)
    assert not d.called
    clock.advance(0.2)
    assert d.called and not clock.getDelayedCalls()


def test_a_failing_listener_closes_the_forwarder_and_releases_waiters():
    fwd, listener, _ = forwarder()
    fwd.forward("c", 0, [("stdout", "x")])
    d = fwd.settled("c")
    listener.answers.pop(0).errback(ConnectionError("client gone"))
    assert fwd.closed and d.called
    fwd.forward("c", 0, [("stdout", "y")])
    assert len(listener.messages) == 1 and fwd.settled("c") is None


@implementer(IEngineBase)
class Engine:
    """An engine whose calls wait until the test answers them."""

    def __init__(self):
        self.id = 3
        self.properties = {}
        self.calls = []

    def __getattr__(self, name):
        def call(*args):
            d = defer.Deferred()
            self.calls.append((name, d))
            return d
        return call


class Controller:
    def __init__(self, queued):
        self.engines = {3: queued}


def submit(queued, sink, tag):
    token, request = current_output.set(sink), current_request.set(tag)
    try:
        return queued.execute("print(1)")
    finally:
        current_request.reset(request)
        current_output.reset(token)


def test_output_goes_to_the_sink_of_the_running_command_only():
    engine = Engine()
    queued = QueuedEngine(engine)
    controller = Controller(queued)
    mine, theirs = forwarder()[:2], forwarder()[:2]
    submit(queued, mine[0], "mine")
    submit(queued, theirs[0], "theirs")
    assert route(controller, 3, [("stdout", "A")], engine)
    assert mine[1].texts() == "A" and theirs[1].messages == []
    assert not route(controller, 3, [("stdout", "B")], Engine())   # not this engine object
    assert not route(controller, 4, [("stdout", "C")])              # no such engine


def test_blocking_calls_and_calls_without_a_listener_are_not_forwarded():
    engine = Engine()
    queued = QueuedEngine(engine)
    fwd, listener, _ = forwarder()
    submit(queued, fwd, None)                # a blocking call: no call id
    assert not route(Controller(queued), 3, [("stdout", "x")], engine)
    engine.calls[0][1].callback({"number": 1})
    submit(queued, None, "id")               # nobody listens
    assert not route(Controller(queued), 3, [("stdout", "x")], engine)
    assert listener.messages == []


def test_an_answer_waits_until_its_output_reached_the_client_and_the_next_command_runs():
    engine = Engine()
    queued = QueuedEngine(engine)
    fwd, listener, _ = forwarder()
    first = submit(queued, fwd, "c1")
    second = submit(queued, fwd, "c2")
    route(Controller(queued), 3, [("stdout", "out")], engine)
    engine.calls[0][1].callback({"number": 1})
    assert not first.called                  # its output is still on its way
    assert len(engine.calls) == 2            # the next command went to the engine anyway
    listener.answer()
    assert first.called and not second.called


def test_the_inlet_routes_what_its_engine_publishes():
    engine = Engine()
    queued = QueuedEngine(engine)
    fwd, listener, _ = forwarder()
    submit(queued, fwd, "c")
    EngineOutputInlet(Controller(queued), 3, engine).remote_output([("stdout", "hi")])
    assert listener.texts("c") == "hi"


def test_only_a_reference_offering_the_listener_interface_is_a_listener():
    class Tracker:
        def __init__(self, name):
            self.interfaceName = name

    class Ref:
        def __init__(self, name):
            self.tracker = Tracker(name)
    assert is_listener(Ref(RIOutputListener.__remote_name__))
    assert not is_listener(Ref(None)) and not is_listener(object())


def test_input_is_asked_of_the_caller_after_its_output_and_refused_without_one():
    from ipkernel.controller.output import ask
    from ipkernel.engine.interpreter import NO_INPUT

    engine = Engine()
    queued = QueuedEngine(engine)
    fwd, listener, _ = forwarder()
    refused = ask(Controller(queued), 3, "name? ", engine)   # nothing runs: nobody to ask
    assert refused.called and refused.result.check(RuntimeError)
    assert str(refused.result.value) == NO_INPUT
    refused.addErrback(lambda _: None)

    class Asking(Listener):
        def callRemote(self, method, *args):
            if method == "input":
                self.asked = args
                return defer.succeed("ann")
            return super().callRemote(method, *args)
    fwd.listener = listener = Asking()
    submit(queued, fwd, "c")
    route(Controller(queued), 3, [("stdout", "before\n")], engine)
    answer = ask(Controller(queued), 3, "name? ", engine)
    assert not answer.called and not hasattr(listener, "asked")   # its output goes first
    listener.answer()
    assert listener.asked == ("c", 3, "name? ") and answer.result == "ann"
