"""The client's end of live output: what engines print, as they print it.

An :class:`OutputListener` is the canary a client gives the controller when
it opens its session; the controller sends it the output of the client's
non-blocking calls as the engines write it (see
:mod:`ipkernel.controller.output`), tagged with the call's pending-result
id.  Each :class:`~ipkernel.client.blocking.PendingResult` claims a
:class:`CallOutput` for its id: the text of every engine, kept
(``PendingResult.stdout``/``.stderr``), and, while a thread waits for the
call with streaming on, printed as it arrives with one prefix per line::

    [stdout:0] step 1 done
    [stderr:1] warning: ...

Output that arrives before its call's id is known (the engines can be
quicker than the answer that gives the id) waits, bounded, to be claimed;
so does an engine's ``input()`` question (for at most
:data:`UNCLAIMED_QUESTION_WAIT` seconds).  A call claimed with
``answers=True`` keeps its questions until a thread waits for it and asks
them of the user; any other call's are refused at once.
"""
import sys
import threading
import weakref
from collections import OrderedDict

from foolscap.api import Referenceable
from zope.interface import implementer

from ipkernel.interfaces.remote import RIOutputListener

#: Call ids whose output may wait to be claimed, and characters of it.
MAX_UNCLAIMED_CALLS = 1024
MAX_UNCLAIMED_CHARS = 8 << 20
#: Seconds an input() question waits for its call to be claimed before it is refused.
UNCLAIMED_QUESTION_WAIT = 30.0

__all__ = ["OutputListener", "CallOutput", "prefixed_lines", "in_ipython",
           "UNCLAIMED_QUESTION_WAIT"]


def in_ipython():
    """True when running inside IPython or a Jupyter kernel (streaming is then
    on by default)."""
    ipython = sys.modules.get("IPython")
    if ipython is None:
        return False
    try:
        return ipython.get_ipython() is not None
    except Exception:  # noqa: B902 - a broken IPython install: a plain script then
        return False


def prefixed_lines(engine_id, name, text):
    """``text`` with ``[name:engine_id]`` and a space before each of its lines."""
    prefix = f"[{name}:{engine_id}] "
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return "".join(f"{prefix}{line}\n" for line in lines)


class CallOutput:
    """The output of one call: kept per engine, and printed while streaming.

    ``add`` is called from the reactor thread, the rest from the thread
    using the result.  :attr:`wake` is set whenever something arrives.
    """

    def __init__(self):
        self._lock = threading.Lock()
        self._texts = {}       # engine id -> {'stdout': [..], 'stderr': [..]}
        self._unshown = []     # (engine id, stream, text) not printed yet
        self._partial = {}     # (engine id, stream) -> the start of a line not printed yet
        self._questions = []   # (engine id, prompt, Deferred) of input() calls to answer
        #: Whether input() on its engines may be asked of this client's user
        #: (set when claimed; else every question is refused).
        self.answers = False
        self._progress = {}    # engine id -> items of a map it reported done
        #: Set (from the reactor thread) whenever output arrives.
        self.wake = threading.Event()

    def add(self, engine_id, name, text):
        if name == "progress":   # how many items of a map the engine has done
            try:
                self._progress[engine_id] = int(text)
            except ValueError:
                return
            self.wake.set()
            return
        with self._lock:
            streams = self._texts.setdefault(engine_id, {"stdout": [], "stderr": []})
            streams.setdefault(name, []).append(text)
            self._unshown.append((engine_id, name, text))
        self.wake.set()

    def question(self, engine_id, prompt, answer):
        """Have the thread that waits for the call ask the user ``prompt`` for
        engine ``engine_id`` and fire the Deferred ``answer`` with the line;
        with :attr:`answers` off, ``answer`` fails at once (reactor thread)."""
        if not self.answers:
            from ipkernel.engine.interpreter import NO_INPUT
            answer.errback(RuntimeError(NO_INPUT))
            return
        with self._lock:
            self._questions.append((engine_id, prompt, answer))
        self.wake.set()

    def items_done(self):
        """The items of a map the engines reported done, all together."""
        return sum(self._progress.values())

    def engine_ids(self):
        """The engines that wrote something, sorted."""
        with self._lock:
            return sorted(self._texts)

    def text(self, engine_id, name):
        """Everything engine ``engine_id`` wrote on stream ``name`` ('' if nothing)."""
        with self._lock:
            return "".join(self._texts.get(engine_id, {}).get(name, ()))

    def show(self, out=None, err=None, final=False):
        """Print the complete lines that arrived since the last call, each
        with its ``[stdout:N]``/``[stderr:N]`` prefix (``final``: also the
        unfinished last lines).  ``out``/``err``: default sys.stdout/stderr."""
        self.wake.clear()
        with self._lock:
            unshown, self._unshown = self._unshown, []
        for engine_id, name, text in unshown:
            key = (engine_id, name)
            text = self._partial.pop(key, "") + text
            cut = text.rfind("\n") + 1
            if cut < len(text):
                self._partial[key] = text[cut:]
            if cut:
                self._write(engine_id, name, text[:cut], out, err)
        if final:
            for (engine_id, name), text in sorted(self._partial.items()):
                self._write(engine_id, name, text, out, err)
            self._partial.clear()
        self._answer_questions(final)

    def _answer_questions(self, final):
        """Ask the user each pending input() question (this thread: the one
        waiting for the call, so IPython and Jupyter prompt as usual)."""
        from twisted.internet import reactor

        with self._lock:
            questions = list(self._questions)
            self._questions.clear()   # the same list: the record's finalizer refuses what is left
        for k, (engine_id, prompt, answer) in enumerate(questions):
            if final:   # the wait is over (Ctrl-C, an error): nobody answers now
                reactor.callFromThread(answer.errback, RuntimeError(
                    "input() was not answered: the client stopped waiting for the call"))
                continue
            try:
                line = input(f"[stdin:{engine_id}] {prompt}")
            except BaseException as exc:  # noqa: B902 - EOF or Ctrl-C: the engine hears of it
                for _, _, later in questions[k:]:
                    reactor.callFromThread(later.errback, RuntimeError(
                        f"input() was not answered on the client ({type(exc).__name__})"))
                raise
            reactor.callFromThread(answer.callback, line)

    @staticmethod
    def _write(engine_id, name, text, out, err):
        stream = (err or sys.stderr) if name == "stderr" else (out or sys.stdout)
        stream.write(prefixed_lines(engine_id, name, text))
        try:
            stream.flush()
        except (AttributeError, ValueError, OSError):
            pass


@implementer(RIOutputListener)
class OutputListener(Referenceable):
    """Takes the live output the controller sends for this client's calls
    (reactor thread) and hands it to the :class:`CallOutput` of each call."""

    def __init__(self, max_unclaimed_calls=MAX_UNCLAIMED_CALLS,
                 max_unclaimed_chars=MAX_UNCLAIMED_CHARS,
                 question_wait=UNCLAIMED_QUESTION_WAIT, clock=None):
        self.max_unclaimed_calls = max_unclaimed_calls
        self.max_unclaimed_chars = max_unclaimed_chars
        self.question_wait = question_wait
        self._clock = clock
        self._lock = threading.Lock()
        self._records = weakref.WeakValueDictionary()   # call id -> CallOutput
        self._unclaimed = OrderedDict()   # call id -> [(engine id, stream, text)]
        self._unclaimed_chars = 0
        self._early_questions = {}        # call id -> [(engine id, prompt, Deferred)]

    def remote_output(self, chunks):
        for call_id, engine_id, name, text in chunks:
            with self._lock:
                record = self._records.get(call_id)
                if record is None:
                    self._keep_unclaimed(call_id, (engine_id, name, text))
                    continue
            record.add(engine_id, name, text)

    def remote_input(self, call_id, engine_id, prompt):
        from twisted.internet import defer

        answer = defer.Deferred()
        with self._lock:
            record = self._records.get(call_id)
            if record is None:   # asked before the call's id came back: wait for the claim
                self._early_questions.setdefault(call_id, []).append(
                    (engine_id, prompt, answer))
        if record is None:
            self._clock_now().callLater(self.question_wait, self._unclaimed_question,
                                        call_id, answer)
        else:
            record.question(engine_id, prompt, answer)
        return answer

    def _clock_now(self):
        if self._clock is None:
            from twisted.internet import reactor
            return reactor
        return self._clock

    def _unclaimed_question(self, call_id, answer):
        from ipkernel.engine.interpreter import NO_INPUT

        with self._lock:
            waiting = self._early_questions.get(call_id, [])
            kept = [q for q in waiting if q[2] is not answer]
            if len(kept) == len(waiting):
                return   # claimed meanwhile
            if kept:
                self._early_questions[call_id] = kept
            else:
                del self._early_questions[call_id]
        answer.errback(RuntimeError(NO_INPUT))

    def _keep_unclaimed(self, call_id, chunk):
        self._unclaimed.setdefault(call_id, []).append(chunk)
        self._unclaimed_chars += len(chunk[2])
        while self._unclaimed and (len(self._unclaimed) > self.max_unclaimed_calls
                                   or self._unclaimed_chars > self.max_unclaimed_chars):
            _, dropped = self._unclaimed.popitem(last=False)
            self._unclaimed_chars -= sum(len(text) for _, _, text in dropped)

    def claim(self, call_id, answers=False):
        """The :class:`CallOutput` of ``call_id`` (made now, with what already
        arrived for it); kept here as long as the caller keeps it (any thread).
        ``answers``: input() on its engines is asked of this client's user
        (by the thread that waits for it); questions still unanswered when
        the record is dropped are refused."""
        record = CallOutput()
        record.answers = answers
        questions = record._questions
        weakref.finalize(record, _refuse_left, questions)
        with self._lock:
            self._records[call_id] = record
            early = self._unclaimed.pop(call_id, ())
            self._unclaimed_chars -= sum(len(text) for _, _, text in early)
            asked = self._early_questions.pop(call_id, ())
        for chunk in early:
            record.add(*chunk)
        for engine_id, prompt, answer in asked:
            _in_reactor(record.question, engine_id, prompt, answer)
        return record


def _in_reactor(f, *args):
    from twisted.internet import reactor
    reactor.callFromThread(f, *args)


def _refuse_left(questions):
    """Fail the input() questions of a call nobody waits for any more."""
    for _, _, answer in list(questions):
        _in_reactor(_refuse, answer)
    questions.clear()


def _refuse(answer):
    if not answer.called:
        answer.errback(RuntimeError("input() was not answered: the client dropped the call's "
                                    "result without waiting for it"))
