"""Tier 1: the client's end of live output (issue 16): kept per engine,
printed with one prefix per line, early output kept until its call claims it."""
import io

import pytest
import pytest_twisted

from ipkernel.client.output import CallOutput, OutputListener, in_ipython, prefixed_lines

pytestmark = pytest.mark.tier1


def test_each_line_gets_its_prefix():
    assert prefixed_lines(2, "stdout", "a\nb\n") == "[stdout:2] a\n[stdout:2] b\n"
    assert prefixed_lines(0, "stderr", "x") == "[stderr:0] x\n"


def test_show_prints_whole_lines_as_they_come_and_the_rest_at_the_end():
    record = CallOutput()
    out, err = io.StringIO(), io.StringIO()
    record.add(0, "stdout", "par")
    record.show(out, err)
    assert out.getvalue() == ""              # half a line waits
    record.add(0, "stdout", "tial\nnext")
    record.add(1, "stderr", "warn\n")
    record.show(out, err)
    assert out.getvalue() == "[stdout:0] partial\n" and err.getvalue() == "[stderr:1] warn\n"
    record.show(out, err, final=True)
    assert out.getvalue().endswith("[stdout:0] next\n")
    record.show(out, err, final=True)        # shown once only
    assert out.getvalue().count("next") == 1


def test_the_text_of_each_engine_is_kept_and_wake_is_set():
    record = CallOutput()
    record.add(1, "stdout", "a")
    assert record.wake.is_set()
    record.add(1, "stdout", "b")
    record.add(0, "stderr", "e")
    assert record.engine_ids() == [0, 1]
    assert record.text(1, "stdout") == "ab" and record.text(0, "stderr") == "e"
    assert record.text(5, "stdout") == ""


def test_output_that_came_before_its_call_was_claimed_is_handed_over():
    listener = OutputListener()
    listener.remote_output([("early", 0, "stdout", "first\n")])
    record = listener.claim("early")
    listener.remote_output([("early", 0, "stdout", "second\n"), ("other", 1, "stdout", "x")])
    assert record.text(0, "stdout") == "first\nsecond\n"
    assert "other" in listener._unclaimed and "early" not in listener._unclaimed


def test_unclaimed_output_is_bounded():
    listener = OutputListener(max_unclaimed_calls=2, max_unclaimed_chars=10)
    for call_id in ("a", "b", "c"):
        listener.remote_output([(call_id, 0, "stdout", "123")])
    assert list(listener._unclaimed) == ["b", "c"]
    listener.remote_output([("d", 0, "stdout", "1234567890")])
    assert list(listener._unclaimed) == ["d"] and listener._unclaimed_chars == 10


def test_a_record_nobody_keeps_is_forgotten():
    listener = OutputListener()
    listener.claim("gone")
    listener.remote_output([("gone", 0, "stdout", "x")])   # (the record was dropped)
    assert "gone" in listener._unclaimed


def test_not_in_ipython_in_a_plain_process():
    assert in_ipython() is False


@pytest_twisted.ensureDeferred
async def test_input_is_refused_for_a_call_that_does_not_answer():
    from twisted.internet import reactor

    from ipkernel.engine.interpreter import NO_INPUT

    listener = OutputListener()
    record = listener.claim("c")   # answers=False: not a streamed call
    with pytest.raises(RuntimeError) as refused:
        await listener.remote_input("c", 0, "name? ").addTimeout(5, reactor)
    assert str(refused.value) == NO_INPUT and not record.wake.is_set()
    answering = listener.claim("d", answers=True)
    answer = listener.remote_input("d", 1, "name? ")
    assert not answer.called and answering.wake.is_set()


@pytest_twisted.ensureDeferred
async def test_a_question_asked_before_its_call_is_claimed_waits_for_the_claim(monkeypatch):
    from twisted.internet import reactor, task

    monkeypatch.setattr("builtins.input", lambda prompt: "early bird")
    clock = task.Clock()
    listener = OutputListener(clock=clock, question_wait=30)
    answer = listener.remote_input("c", 0, "name? ")   # the engine was quicker than the id
    assert not answer.called
    record = listener.claim("c", answers=True)
    await task.deferLater(reactor, 0, lambda: None)    # handed over in the reactor thread
    record.show(io.StringIO(), io.StringIO())
    assert await answer.addTimeout(5, reactor) == "early bird"
    clock.advance(31)                                   # its timer finds nothing to refuse
    assert listener._early_questions == {}


@pytest_twisted.ensureDeferred
async def test_a_question_whose_call_is_never_claimed_is_refused_after_a_while():
    from twisted.internet import reactor, task

    from ipkernel.engine.interpreter import NO_INPUT

    clock = task.Clock()
    listener = OutputListener(clock=clock, question_wait=30)
    answer = listener.remote_input("never", 0, "name? ")
    clock.advance(29)
    assert not answer.called
    clock.advance(2)
    with pytest.raises(RuntimeError) as refused:
        await answer.addTimeout(5, reactor)
    assert str(refused.value) == NO_INPUT and listener._early_questions == {}


@pytest_twisted.ensureDeferred
async def test_questions_of_a_dropped_result_are_refused():
    import gc

    from twisted.internet import reactor

    listener = OutputListener()
    record = listener.claim("c", answers=True)
    answer = listener.remote_input("c", 0, "name? ")
    del record
    gc.collect()
    with pytest.raises(RuntimeError, match="dropped the call's result"):
        await answer.addTimeout(5, reactor)


@pytest_twisted.ensureDeferred
async def test_the_waiting_thread_asks_with_the_engine_id_and_answers_the_engine(monkeypatch):
    from twisted.internet import reactor

    asked = []
    monkeypatch.setattr("builtins.input", lambda prompt: asked.append(prompt) or "ann")
    listener = OutputListener()
    record = listener.claim("c", answers=True)
    answer = listener.remote_input("c", 2, "name? ")
    record.show(io.StringIO(), io.StringIO())
    assert asked == ["[stdin:2] name? "]
    assert await answer.addTimeout(5, reactor) == "ann"
    unanswered = listener.remote_input("c", 2, "again? ")
    record.show(io.StringIO(), io.StringIO(), final=True)   # the wait ended: nobody answers
    with pytest.raises(RuntimeError, match="not answered"):
        await unanswered.addTimeout(5, reactor)
