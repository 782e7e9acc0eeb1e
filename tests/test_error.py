"""Tier 1: ipkernel.error -- CompositeError, collect_exceptions, RemoteError, the hierarchy."""
import io
import sys

import pytest
from twisted.python.failure import Failure

from ipkernel import error
from ipkernel.error import (ENGINE_INFO_ATTR, TRACEBACK_ATTR, CompositeError, EngineError,
                            KernelError, RemoteError, collect_exceptions, tag_exception)

pytestmark = pytest.mark.tier1


def _raise_in_named_frame(exc):
    """Raise ``exc`` from a frame whose name the tests look for in tracebacks."""
    raise exc


def _caught(exc, engine_id=None, method=None, traceback_text=None):
    """Return an ``(type, value, traceback)`` triple for a really raised ``exc``,
    tagged like an engine would tag it when ``method`` is given."""
    try:
        _raise_in_named_frame(exc)
    except BaseException:
        etype, value, tb = sys.exc_info()
    if method is not None:
        tag_exception(value, engine_id, method, traceback_text)
    return etype, value, tb


def _composite(*triples, message="one or more exceptions from call to method: execute"):
    return CompositeError(message, list(triples))


# --------------------------------------------------------------------------- str()

def test_composite_str_labels_each_error_with_engine_and_method():
    zero = _caught(ZeroDivisionError("division by zero"), 0, "execute")
    name = _caught(NameError("name 'x' is not defined"), 3, "pull")
    ce = _composite(zero, name)
    lines = str(ce).splitlines()
    assert lines == [
        "one or more exceptions from call to method: execute",
        "[0:execute]: ZeroDivisionError: division by zero",
        "[3:pull]: NameError: name 'x' is not defined",
    ]


def test_composite_str_of_untagged_error_says_engine_exception():
    ce = _composite(_caught(KeyError("a")))
    assert str(ce).splitlines()[1] == "[Engine Exception]: KeyError: 'a'"


def test_composite_keeps_message_elist_and_exceptions_in_order():
    first = _caught(ValueError("one"), 1, "apply")
    second = _caught(TypeError("two"), 0, "apply")
    ce = _composite(first, second, message="boom")
    assert ce.message == "boom"
    assert ce.elist == [first, second]
    assert ce.exceptions == [first[1], second[1]]
    assert isinstance(ce, KernelError)
    assert "2" in repr(ce)


# --------------------------------------------------------------------------- print_tracebacks

def test_print_tracebacks_all_prints_labels_and_engine_side_text():
    ce = _composite(
        _caught(ZeroDivisionError("division by zero"), 0, "execute",
                "Traceback:\n  line 1 in <engine>\nZeroDivisionError: engine text zero\n"),
        _caught(NameError("nope"), 1, "execute",
                "Traceback:\nNameError: engine text name\n"))
    out = io.StringIO()
    ce.print_tracebacks(file=out)
    text = out.getvalue()
    assert "[0:execute]" in text and "[1:execute]" in text
    assert "engine text zero" in text and "engine text name" in text
    assert text.index("[0:execute]") < text.index("engine text zero") < text.index("[1:execute]")


def test_print_tracebacks_one_prints_only_that_error(capsys):
    ce = _composite(
        _caught(ZeroDivisionError("z"), 0, "execute", "first engine traceback\n"),
        _caught(NameError("n"), 1, "execute", "second engine traceback\n"))
    ce.print_tracebacks(1)  # default file: stdout
    text = capsys.readouterr().out
    assert "[1:execute]" in text and "second engine traceback" in text
    assert "[0:execute]" not in text and "first engine traceback" not in text


def test_print_tracebacks_without_engine_text_falls_back_to_local_traceback():
    ce = _composite(_caught(ValueError("local only"), 2, "apply"))
    out = io.StringIO()
    ce.print_tracebacks(0, file=out)
    text = out.getvalue()
    assert "[2:apply]" in text
    assert "_raise_in_named_frame" in text
    assert "ValueError: local only" in text


def test_print_tracebacks_without_any_traceback_says_so():
    exc = ValueError("bare")
    tag_exception(exc, 0, "execute")
    ce = _composite((ValueError, exc, None))
    out = io.StringIO()
    ce.print_tracebacks(file=out)
    assert "No traceback available" in out.getvalue()


@pytest.mark.parametrize("bad", [2, 10, -3, "0", 1.5])
def test_print_tracebacks_bad_index_raises_index_error(bad):
    ce = _composite(_caught(ValueError("a"), 0, "execute"), _caught(ValueError("b"), 1, "execute"))
    out = io.StringIO()
    with pytest.raises(IndexError):
        ce.print_tracebacks(bad, file=out)
    assert out.getvalue() == ""


# --------------------------------------------------------------------------- raise_exception

def test_raise_exception_reraises_the_original_object_with_its_traceback():
    zero = _caught(ZeroDivisionError("division by zero"), 0, "execute")
    ce = _composite(zero, _caught(KeyError("k"), 1, "execute"))
    with pytest.raises(ZeroDivisionError) as info:
        ce.raise_exception()
    assert info.value is zero[1]
    frames = [entry.name for entry in info.traceback]
    assert "_raise_in_named_frame" in frames


def test_raise_exception_picks_the_requested_error():
    key = _caught(KeyError("k"), 1, "execute")
    ce = _composite(_caught(ZeroDivisionError("z"), 0, "execute"), key)
    with pytest.raises(KeyError) as info:
        ce.raise_exception(1)
    assert info.value is key[1]


def test_raise_exception_bad_index_raises_index_error():
    ce = _composite(_caught(ZeroDivisionError("z"), 0, "execute"))
    with pytest.raises(IndexError) as info:
        ce.raise_exception(5)
    assert not isinstance(info.value, ZeroDivisionError)


# --------------------------------------------------------------------------- collect_exceptions

def _failure(exc, engine_id=None, method=None):
    etype, value, tb = _caught(exc, engine_id, method)
    return Failure(value, etype, tb)


def test_collect_exceptions_returns_results_untouched_when_nothing_failed():
    results = [1, None, {"a": 2}, [3]]
    assert collect_exceptions(results, "pull") is results
    assert results == [1, None, {"a": 2}, [3]]


def test_collect_exceptions_raises_composite_with_every_failure_in_order():
    results = [10, _failure(ZeroDivisionError("z"), 1, "execute"), 30,
               _failure(NameError("n"), 3, "execute")]
    with pytest.raises(CompositeError) as info:
        collect_exceptions(results, "execute")
    ce = info.value
    assert ce.message == "one or more exceptions from call to method: execute"
    assert [etype for etype, _, _ in ce.elist] == [ZeroDivisionError, NameError]
    assert str(ce).splitlines()[1:] == ["[1:execute]: ZeroDivisionError: z",
                                        "[3:execute]: NameError: n",
                                        "(2 of 4 engines succeeded; their results are in "
                                        ".results and .successes)"]
    # the healthy engines' results are kept, in target order, with the errors in place
    assert ce.results[0] == 10 and ce.results[2] == 30
    assert isinstance(ce.results[1], ZeroDivisionError) and isinstance(ce.results[3], NameError)
    assert ce.failed == [1, 3]
    assert ce.successes == {0: 10, 2: 30}


def test_collect_exceptions_names_the_engines_of_the_results():
    results = [_failure(EngineError("engine 4 is gone"), 4, "push"), None]
    with pytest.raises(CompositeError) as info:
        collect_exceptions(results, "push", engine_ids=[4, 7])
    ce = info.value
    assert ce.engine_ids == [4, 7]
    assert ce.successes == {7: None}
    assert [type(e) for e in ce.exceptions] == [EngineError]


def test_a_composite_made_from_errors_only_has_them_as_results():
    ce = _composite(_caught(KeyError("k"), 0, "execute"))
    assert ce.results == ce.exceptions and ce.failed == [0] and ce.successes == {}
    assert "succeeded" not in str(ce)


def test_collect_exceptions_flattens_nested_composite_errors():
    inner = _composite(_caught(ValueError("v0"), 0, "push"), _caught(TypeError("t1"), 1, "push"))
    results = [Failure(inner), None, _failure(KeyError("k2"), 2, "push")]
    with pytest.raises(CompositeError) as info:
        collect_exceptions(results, "push")
    ce = info.value
    assert [type(e) for e in ce.exceptions] == [ValueError, TypeError, KeyError]
    assert not any(isinstance(e, CompositeError) for e in ce.exceptions)
    assert "[1:push]: TypeError: t1" in str(ce).splitlines()
    assert ce.message.endswith("push")


def test_collect_exceptions_keeps_tracebacks_usable():
    results = [_failure(ZeroDivisionError("deep"), 0, "execute")]
    with pytest.raises(CompositeError) as info:
        collect_exceptions(results, "execute")
    with pytest.raises(ZeroDivisionError, match="deep"):
        info.value.raise_exception()


# --------------------------------------------------------------------------- RemoteError

def test_remote_error_fields_and_str():
    info = {"engine_id": 4, "method": "apply"}
    err = RemoteError("WeirdError", "it broke", "Traceback...\nWeirdError: it broke\n", info)
    assert isinstance(err, KernelError)
    assert err.ename == "WeirdError"
    assert err.evalue == "it broke"
    assert err.traceback.startswith("Traceback...")
    assert err.engine_info == info
    assert str(err) == "WeirdError: it broke"
    assert getattr(err, ENGINE_INFO_ATTR) == info
    assert getattr(err, TRACEBACK_ATTR) == err.traceback
    info["engine_id"] = 99  # the error keeps its own copy
    assert err.engine_info["engine_id"] == 4


def test_remote_error_without_value_or_info():
    err = RemoteError("Boom", "")
    assert str(err) == "Boom"
    assert err.engine_info == {}
    assert err.traceback == ""


def test_remote_error_in_composite_uses_its_engine_info_and_text():
    err = RemoteError("WeirdError", "it broke", "remote traceback text\n",
                      {"engine_id": 7, "method": "execute"})
    ce = _composite((RemoteError, err, None))
    assert str(ce).splitlines()[1].startswith("[7:execute]: ")
    assert "it broke" in str(ce).splitlines()[1]
    out = io.StringIO()
    ce.print_tracebacks(file=out)
    assert "remote traceback text" in out.getvalue()


# --------------------------------------------------------------------------- tagging and hierarchy

def test_tag_exception_does_not_overwrite_existing_info():
    exc = ValueError("x")
    tag_exception(exc, 1, "execute", "first text")
    tag_exception(exc, 2, "pull", "second text")
    assert getattr(exc, ENGINE_INFO_ATTR) == {"engine_id": 1, "method": "execute"}
    assert getattr(exc, TRACEBACK_ATTR) == "first text"


@pytest.mark.parametrize("name, builtin_base", [
    ("ResultEvicted", IndexError),
    ("InvalidProperty", TypeError),
    ("InvalidEngineID", ValueError),
    ("InvalidDeferredID", KeyError),
    ("NotAPendingResult", TypeError),
])
def test_errors_that_are_also_builtin_errors(name, builtin_base):
    cls = getattr(error, name)
    assert issubclass(cls, KernelError)
    assert issubclass(cls, builtin_base)


@pytest.mark.parametrize("name", [
    "EngineError", "ControllerError", "QueueCleared", "NoEnginesRegistered", "ResultNotCompleted",
    "AbortedPendingDeferredError", "Aborted", "SerializationError", "PayloadTooLarge",
    "MissingBlockArgument", "StopLocalExecution", "SecurityError", "FileTimeoutError",
    "TaskAborted", "TaskTimeout", "TaskRejectError", "UnpickleableException", "CompositeError",
    "RemoteError",
])
def test_every_kernel_error_derives_from_kernel_error(name):
    assert issubclass(getattr(error, name), KernelError)


def test_invalid_deferred_id_str_is_not_quoted():
    assert str(error.InvalidDeferredID("no such id: abc")) == "no such id: abc"


def test_a_composite_error_is_measured_with_the_results_it_keeps():
    from ipkernel import sizes

    big = b"r" * 1_000_000
    with pytest.raises(CompositeError) as info:
        collect_exceptions([big, _failure(KeyError("k"), 1, "pull")], "pull")
    # what keeps it (a pending result) is charged for the healthy engine's value
    assert sizes.estimate(info.value) > len(big)
    assert info.value.args[0] == "one or more exceptions from call to method: pull"


# --------------------------------------------------------------------------- display in IPython

_ENGINE_ZERO_TEXT = ('Traceback (most recent call last):\n'
                     '  File "<ipkernel-input-1>", line 1, in <module>\n'
                     '    1/0\n'
                     'ZeroDivisionError: division by zero\n')


def _engine_zero(engine_id, method="execute"):
    return _caught(ZeroDivisionError("division by zero"), engine_id, method, _ENGINE_ZERO_TEXT)


def test_composite_renders_each_engine_label_and_engine_text_only():
    ce = _composite(_engine_zero(0), _engine_zero(1))
    lines = ce._render_traceback_()
    assert all(isinstance(line, str) and "\n" not in line for line in lines)
    assert lines[0] == "CompositeError: one or more exceptions from call to method: execute"
    block = _ENGINE_ZERO_TEXT.splitlines()
    assert lines[1:] == ["", "[0:execute]", *block, "", "[1:execute]", *block]
    # the local traceback these errors also carry is not shown
    assert not any("_raise_in_named_frame" in line or "test_error" in line for line in lines)


def test_composite_render_shows_a_few_in_full_then_one_line_per_engine():
    n = 64
    ce = _composite(*(_engine_zero(k) for k in range(n)))
    lines = ce._render_traceback_()
    full = error.FULL_TRACEBACKS
    assert [k for k in range(n) if f"[{k}:execute]" in lines] == list(range(full))
    short = [line for line in lines if line.endswith("] ZeroDivisionError: division by zero")]
    assert short == [f"[{k}:execute] ZeroDivisionError: division by zero" for k in range(full, n)]
    assert lines.count("Traceback (most recent call last):") == full
    assert "e.print_tracebacks()" in lines[-1] and f"{n - full} more" in lines[-1]
    assert len(lines) < full * (len(_ENGINE_ZERO_TEXT.splitlines()) + 2) + (n - full) + 4


def test_composite_render_of_exactly_the_full_number_has_no_summary():
    ce = _composite(*(_engine_zero(k) for k in range(error.FULL_TRACEBACKS)))
    lines = ce._render_traceback_()
    assert lines.count("Traceback (most recent call last):") == error.FULL_TRACEBACKS
    assert not any("print_tracebacks" in line for line in lines)


def test_composite_render_says_how_many_engines_succeeded():
    zero = _engine_zero(1)
    ce = CompositeError("one or more exceptions from call to method: execute", [zero],
                        [None, zero[1], None], [0, 1, 2], [1])
    assert ce._render_traceback_()[-1] == (
        "(2 of 3 engines succeeded; their results are in .results and .successes)")


def test_composite_render_without_engine_text_shows_the_exception_line_not_local_frames():
    ce = _composite(_caught(ValueError("local only"), 2, "apply"), _caught(KeyError("k")))
    lines = ce._render_traceback_()
    assert lines[1:] == ["", "[2:apply]", "ValueError: local only",
                         "", "[Engine Exception]", "KeyError: 'k'"]


def test_composite_render_leaves_str_and_print_tracebacks_as_they_were():
    ce = _composite(*(_engine_zero(k) for k in range(6)))
    ce._render_traceback_()
    assert str(ce).splitlines()[6] == "[5:execute]: ZeroDivisionError: division by zero"
    out = io.StringIO()
    ce.print_tracebacks(file=out)
    assert out.getvalue().count("Traceback (most recent call last):") == 6


def test_remote_error_renders_its_label_and_engine_text():
    err = RemoteError("WeirdError", "it broke", "Traceback:\n  engine frame\nWeirdError: it broke\n",
                      {"engine_id": 7, "method": "apply"})
    assert err._render_traceback_() == ["[7:apply]", "Traceback:", "  engine frame",
                                        "WeirdError: it broke"]
    assert RemoteError("Boom", "")._render_traceback_() == ["[Engine Exception]", "Boom"]


def test_show_engine_traceback_gives_the_instance_a_renderer_that_pickles():
    import pickle

    exc = tag_exception(ZeroDivisionError("division by zero"), 3, "execute", _ENGINE_ZERO_TEXT)
    assert error.show_engine_traceback(exc) is exc
    expected = ["[3:execute]", *_ENGINE_ZERO_TEXT.splitlines()]
    assert exc._render_traceback_() == expected
    assert not hasattr(ZeroDivisionError, "_render_traceback_")  # only this instance
    assert not hasattr(ZeroDivisionError("other"), "_render_traceback_")
    back = pickle.loads(pickle.dumps(exc))
    assert type(back) is ZeroDivisionError and back._render_traceback_() == expected


def test_show_engine_traceback_without_text_shows_the_exception_line():
    exc = tag_exception(NameError("name 'nope' is not defined"), 0, "pull")
    error.show_engine_traceback(exc)
    assert exc._render_traceback_() == ["[0:pull]", "NameError: name 'nope' is not defined"]


def test_show_engine_traceback_keeps_a_class_own_renderer():
    class Rendered(Exception):
        def _render_traceback_(self):
            return ["own"]

    exc = tag_exception(Rendered("x"), 0, "apply", "engine text\n")
    error.show_engine_traceback(exc)
    assert exc._render_traceback_() == ["own"]


def test_exception_summary_is_one_line():
    class Unprintable(Exception):
        def __str__(self):
            raise RuntimeError("no str")

    assert error.exception_summary(ZeroDivisionError("division by zero")) == \
        "ZeroDivisionError: division by zero"
    assert error.exception_summary(StopIteration()) == "StopIteration"
    assert error.exception_summary(ValueError("first\nsecond")) == "ValueError: first"
    assert error.exception_summary(RemoteError("WeirdError", "it broke")) == "WeirdError: it broke"
    assert error.exception_summary(Unprintable()) == "Unprintable: <unprintable>"
