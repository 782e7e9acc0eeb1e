"""Live output on the controller: from the engine running a call to the client that made it.

An engine publishes what its user code writes on its :class:`EngineOutputInlet`
(given to it at registration).  The inlet hands the chunks to the
:class:`OutputForwarder` of the command the engine is running now: the one
of the client session that made the call (the command captured it from
:data:`ipkernel.engine.queued.current_output` when it was submitted), under
that call's pending-result id.  Output of commands that no client listens to
(blocking calls, the task farm's) is dropped.  Never another client's.

The forwarder sends to the client's listener one message at a time; what
waits meanwhile is bounded per call (:data:`CALL_CAP`, the oldest dropped
first, with a note in its place) and per session (:data:`SESSION_CAP`).
:meth:`OutputForwarder.settled` lets the engine queue hold a command's
answer until its output reached the client (at most :data:`SETTLE_TIMEOUT`).
"""
from collections import OrderedDict, deque

from foolscap.api import Referenceable
from twisted.internet import defer
from twisted.logger import Logger
from zope.interface import implementer

from ipkernel.engine.interpreter import NO_INPUT
from ipkernel.engine.outlet import dropped_note
from ipkernel.interfaces.remote import MAX_OUTPUT_CHUNKS, RIEngineOutput, RIOutputListener

log = Logger()

#: Characters of one call's output that may wait for its client.
CALL_CAP = 4 << 20
#: Characters of output that may wait for one client, all its calls together.
SESSION_CAP = 16 << 20
#: Seconds a command's answer waits for its output to reach the client.
SETTLE_TIMEOUT = 5.0

__all__ = ["EngineOutputInlet", "OutputForwarder", "is_listener", "route", "ask", "CALL_CAP",
           "SESSION_CAP", "SETTLE_TIMEOUT"]


def is_listener(reference):
    """True when the RemoteReference ``reference`` offers RIOutputListener."""
    tracker = getattr(reference, "tracker", None)
    return getattr(tracker, "interfaceName", None) == RIOutputListener.__remote_name__


def _listening(controller, engine_id, engine):
    """``(forwarder, call id)`` of the command engine ``engine_id`` runs now,
    or None when nobody listens to it.  ``engine``: the engine object that
    asks (an engine replaced under the same id is not listened to)."""
    queued = controller.engines.get(engine_id)
    if queued is None or (engine is not None and getattr(queued, "engine", None) is not engine):
        return None
    command = getattr(queued, "current", None)
    sink = getattr(command, "sink", None)
    if sink is None or command.tag is None:
        return None
    return sink, command.tag


def route(controller, engine_id, chunks, engine=None):
    """Hand ``chunks`` written on engine ``engine_id`` to the forwarder of the
    command it runs now; False when nobody takes them."""
    listening = _listening(controller, engine_id, engine)
    if listening is None:
        return False
    sink, call_id = listening
    sink.forward(call_id, engine_id, chunks)
    return True


def ask(controller, engine_id, prompt, engine=None):
    """A Deferred of the answer to ``input(prompt)`` on engine ``engine_id``,
    from the client whose call it runs; fails (RuntimeError) when there is none."""
    listening = _listening(controller, engine_id, engine)
    if listening is None:
        return defer.fail(RuntimeError(NO_INPUT))
    sink, call_id = listening
    return sink.ask(call_id, engine_id, prompt)


@implementer(RIEngineOutput)
class EngineOutputInlet(Referenceable):
    """Where engine ``engine_id`` (the RemoteEngine ``engine``) publishes its output."""

    def __init__(self, controller, engine_id, engine=None):
        self.controller = controller
        self.engine_id = engine_id
        self.engine = engine

    def remote_output(self, chunks):
        route(self.controller, self.engine_id, chunks, self.engine)

    def remote_input(self, prompt):
        return ask(self.controller, self.engine_id, prompt, self.engine)


class OutputForwarder:
    """Sends one client's live output to its ``listener`` (a RemoteReference
    offering RIOutputListener), bounded; see the module doc."""

    def __init__(self, listener, call_cap=CALL_CAP, session_cap=SESSION_CAP,
                 settle_timeout=SETTLE_TIMEOUT, clock=None):
        if clock is None:
            from twisted.internet import reactor as clock
        self.listener = listener
        self.call_cap = call_cap
        self.session_cap = session_cap
        self.settle_timeout = settle_timeout
        self.clock = clock
        self.closed = False
        self._queues = OrderedDict()   # call id -> deque of (engine id, stream, text)
        self._chars = {}               # call id -> characters queued
        self._total = 0
        self._dropped = OrderedDict()  # (call id, engine id) -> characters dropped
        self._sending = None           # the call ids of the message on its way, or None
        self._waiters = {}             # call id -> [Deferred] of settled()

    def __repr__(self):
        return f"<OutputForwarder calls={len(self._queues)} chars={self._total}>"

    # -- taking output ----------------------------------------------------------------

    def forward(self, call_id, engine_id, chunks):
        """Queue ``chunks`` (``(stream, text)`` pairs) of ``call_id`` from
        ``engine_id`` and send them on."""
        if self.closed:
            return
        queue = self._queues.get(call_id)
        if queue is None:
            queue = self._queues[call_id] = deque()
            self._chars[call_id] = 0
        for name, text in chunks:
            queue.append((engine_id, name, text))
            self._chars[call_id] += len(text)
            self._total += len(text)
        while self._chars[call_id] > self.call_cap and len(queue) > 1:
            self._drop_oldest(call_id)
        while self._total > self.session_cap and self._queues:
            self._drop_oldest(next(iter(self._queues)))
        self._send()

    def _drop_oldest(self, call_id):
        queue = self._queues[call_id]
        engine_id, _, text = queue.popleft()
        self._chars[call_id] -= len(text)
        self._total -= len(text)
        key = (call_id, engine_id)
        self._dropped[key] = self._dropped.get(key, 0) + len(text)
        if not queue:
            del self._queues[call_id]
            del self._chars[call_id]

    # -- sending ----------------------------------------------------------------------

    def _message(self):
        chunks = []
        for (call_id, engine_id), chars in list(self._dropped.items()):
            chunks.append((call_id, engine_id, "stderr",
                           dropped_note(chars, "on the controller (the client took it too slowly)")))
            del self._dropped[(call_id, engine_id)]
        calls = set()
        for call_id in list(self._queues):
            queue = self._queues[call_id]
            calls.add(call_id)
            while queue and len(chunks) < MAX_OUTPUT_CHUNKS:
                engine_id, name, text = queue.popleft()
                self._chars[call_id] -= len(text)
                self._total -= len(text)
                chunks.append((call_id, engine_id, name, text))
            if not queue:
                del self._queues[call_id]
                del self._chars[call_id]
            if len(chunks) >= MAX_OUTPUT_CHUNKS:
                break
        calls.update(call_id for call_id, _, _, _ in chunks)
        return chunks, calls

    def _send(self):
        if self._sending is not None or self.closed:
            return
        chunks, calls = self._message()
        if not chunks:
            return
        self._sending = calls
        try:
            d = self.listener.callRemote("output", chunks)
        except Exception:
            d = defer.fail()
        d.addCallbacks(self._sent, self._lost)

    def _sent(self, _):
        sent, self._sending = self._sending, None
        for call_id in sent:
            if call_id not in self._queues:
                self._wake(call_id)
        self._send()

    def _lost(self, failure):
        log.info("a client's output listener failed ({why}); its output is dropped from now on",
                 why=failure.getErrorMessage())
        self.close()

    def close(self):
        """Drop everything (the client is gone); waiters are released."""
        self.closed = True
        self._sending = None
        self._queues.clear()
        self._chars.clear()
        self._dropped.clear()
        self._total = 0
        for call_id in list(self._waiters):
            self._wake(call_id)

    def ask(self, call_id, engine_id, prompt):
        """A Deferred of the client's answer to ``prompt`` (after the call's
        output so far reached it)."""
        if self.closed:
            return defer.fail(RuntimeError(NO_INPUT))
        waiting = self.settled(call_id)
        d = defer.succeed(None) if waiting is None else waiting
        return d.addCallback(lambda _: self.listener.callRemote("input", call_id, engine_id,
                                                                prompt))

    # -- settling ---------------------------------------------------------------------

    def settled(self, call_id):
        """None when no output of ``call_id`` waits or travels; else a Deferred
        firing (never failing) once it reached the client, or after
        ``settle_timeout`` seconds."""
        if self.closed or (call_id not in self._queues
                           and (self._sending is None or call_id not in self._sending)):
            return None
        d = defer.Deferred()
        self._waiters.setdefault(call_id, []).append(d)
        timer = self.clock.callLater(self.settle_timeout, self._late, call_id, d)
        d.addBoth(lambda result: (timer.cancel() if timer.active() else None, result)[1])
        return d

    def _late(self, call_id, d):
        waiters = self._waiters.get(call_id, [])
        if d in waiters:
            waiters.remove(d)
            if not waiters:
                del self._waiters[call_id]
            d.callback(None)

    def _wake(self, call_id):
        for d in self._waiters.pop(call_id, []):
            d.callback(None)
