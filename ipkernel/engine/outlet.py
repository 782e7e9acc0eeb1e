"""Live output: what user code writes while a command runs, sent as it comes.

The engine's :class:`OutputOutlet` is handed every write of the user thread
during ``execute``, ``apply`` and ``map`` (see
``ipkernel.engine.capture.publishing``).  It gathers the writes for a
moment (:data:`FLUSH_DELAY`) and sends them to the controller's
``RIEngineOutput`` (its ``target``, set by the engine's connector), one
message on its way at a time.  At the end of a command the user thread calls
:meth:`OutputOutlet.settle`: it waits until the controller has taken every
chunk, so the command's answer never overtakes its output.

Bounded: at most :data:`MAX_PENDING` characters wait to be sent; beyond, the
oldest are dropped and a note says how much.  Commands that write nothing
cost nothing.
"""
import re
import threading

from twisted.logger import Logger

from ipkernel.interfaces.remote import MAX_OUTPUT_CHUNKS, MAX_OUTPUT_TEXT

log = Logger()

#: The streams whose chunks are text to join (``'progress'`` chunks are counts).
TEXT_STREAMS = ("stdout", "stderr")
#: Seconds writes are gathered before they are sent.
FLUSH_DELAY = 0.05
#: Characters of output that may wait to be sent (the oldest are dropped beyond).
MAX_PENDING = 4 << 20
#: Seconds the end of a command waits for its output to be taken.
SETTLE_TIMEOUT = 10.0

__all__ = ["OutputOutlet", "LaneOrFoolscap", "dropped_note", "pack_chunks", "FLUSH_DELAY",
           "MAX_PENDING", "SETTLE_TIMEOUT"]


class LaneOrFoolscap:
    """Calls ``rref`` (the controller's RIEngineOutput for this engine) on the
    lane of ``link`` (the engine's Link to the controller) while it is
    joined, else through Foolscap: the lane's round trip is the shorter one,
    and commands end waiting for it (see :meth:`OutputOutlet.settle`)."""

    def __init__(self, link, rref):
        self.link = link
        self.rref = rref

    def callRemote(self, method, *args):
        link = self.link
        if link is not None and link.lane_joined:
            return link.lane.callRemote(method, *args)
        return self.rref.callRemote(method, *args)


def dropped_note(chars, where):
    """The text put in place of ``chars`` characters of output dropped ``where``."""
    return (f"\n[ipkernel: {chars} characters of output were dropped {where}; "
            f"write less, or write it to a file]\n")


def _remote_message(exc):
    """Why an ``input`` call failed: the message of the RuntimeError raised
    on the controller or the client (Foolscap hands it on as text inside
    its RemoteException), else the standard one."""
    from ipkernel.engine.interpreter import NO_INPUT

    found = re.findall(r"RuntimeError: ([^\n'\\]+)", str(exc))
    return found[-1] if found else NO_INPUT


def pack_chunks(pairs, max_text=MAX_OUTPUT_TEXT):
    """``(stream, text)`` pairs with neighbours of one text stream joined and
    long texts cut to ``max_text``: what goes in output messages, in order."""
    out = []
    for name, text in pairs:
        if (out and out[-1][0] == name and name in TEXT_STREAMS
                and len(out[-1][1]) + len(text) <= max_text):
            out[-1] = (name, out[-1][1] + text)
            continue
        for start in range(0, len(text), max_text):
            out.append((name, text[start:start + max_text]))
    return out


class OutputOutlet:
    """The engine's end of live output (see the module doc).

    ``write`` and ``settle`` are called from the user thread; everything
    else runs in the reactor thread.  ``target`` is a RemoteReference
    providing ``RIEngineOutput``, or None (nothing is sent: no controller).
    """

    def __init__(self, reactor=None, delay=FLUSH_DELAY, max_pending=MAX_PENDING,
                 settle_timeout=SETTLE_TIMEOUT):
        if reactor is None:
            from twisted.internet import reactor
        self.reactor = reactor
        self.delay = delay
        self.max_pending = max_pending
        self.settle_timeout = settle_timeout
        self.target = None
        self._lock = threading.Lock()
        self._pending = []       # (stream, text) not sent yet, oldest first
        self._chars = 0          # characters in _pending
        self._dropped = 0        # characters dropped since the last message
        self._wanted = False     # a flush is asked for (reactor thread told)
        self._dirty = False      # written to since the last settle
        self._timer = None
        self._inflight = False
        self._waiters = []       # threading.Events of settle() calls

    # -- the user thread ----------------------------------------------------------------

    def write(self, name, text):
        """Take ``text`` written on stream ``name`` (user thread)."""
        if self.target is None:
            return
        with self._lock:
            self._pending.append((name, text))
            self._chars += len(text)
            while self._chars > self.max_pending and len(self._pending) > 1:
                _, old = self._pending.pop(0)
                self._chars -= len(old)
                self._dropped += len(old)
            self._dirty = True
            if self._wanted:
                return
            self._wanted = True
        self.reactor.callFromThread(self._soon)

    def settle(self):
        """Send what is waiting and return once the controller took all of it
        (at most ``settle_timeout`` seconds).  At once when nothing was written."""
        if not self._dirty:
            return
        self._dirty = False
        from twisted.python import threadable

        if threadable.isInIOThread():   # (engines in the reactor thread: tests)
            self._flush()
            return
        done = threading.Event()
        self.reactor.callFromThread(self._settle_now, done)
        if not done.wait(self.settle_timeout):
            log.warn("the controller did not take this command's output within {t:g} s; "
                     "answering anyway", t=self.settle_timeout)

    def ask(self, prompt):
        """The line the client's user answers to ``prompt`` (user thread): what
        was written before goes first.  RuntimeError when nobody waits for
        the call interactively (the controller or the client says why)."""
        from twisted.internet import threads

        self._dirty = True
        self.settle()
        target = self.target
        if target is None:
            raise RuntimeError("input() cannot be answered: the engine lost its controller")
        try:
            return threads.blockingCallFromThread(self.reactor, target.callRemote, "input",
                                                  prompt)
        except Exception as exc:
            raise RuntimeError(_remote_message(exc)) from None

    # -- the reactor thread -------------------------------------------------------------

    def _soon(self):
        if self._timer is None and not self._inflight:
            self._timer = self.reactor.callLater(self.delay, self._flush)

    def _settle_now(self, done):
        self._waiters.append(done)
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None
        if not self._inflight:
            self._flush()

    def _take(self):
        with self._lock:
            pairs, self._pending, self._chars = self._pending, [], 0
            dropped, self._dropped = self._dropped, 0
            self._wanted = False
        if dropped:
            pairs.insert(0, ("stderr", dropped_note(dropped, "on the engine")))
        return pack_chunks(pairs)

    def _flush(self):
        self._timer = None
        chunks = self._take()
        target = self.target
        if not chunks or target is None:
            self._release()
            return
        first, rest = chunks[:MAX_OUTPUT_CHUNKS], chunks[MAX_OUTPUT_CHUNKS:]
        if rest:
            with self._lock:  # (a flood: the rest goes in the next message)
                self._pending[:0] = rest
                self._chars += sum(len(text) for _, text in rest)
        self._inflight = True
        try:
            d = target.callRemote("output", first)
        except Exception:
            log.failure("could not send output to the controller")
            self._sent(None)
            return
        d.addErrback(self._failed)
        d.addBoth(self._sent)

    def _failed(self, failure):
        log.info("output not delivered to the controller ({why})", why=failure.getErrorMessage())

    def _sent(self, _):
        self._inflight = False
        with self._lock:
            more = bool(self._pending) or self._dropped
        if more and self.target is not None:
            self._flush()
        else:
            self._release()

    def _release(self):
        waiters, self._waiters = self._waiters, []
        for done in waiters:
            done.set()
