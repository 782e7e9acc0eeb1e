"""Tier 1: the Interpreter -- synchronous execution, result dicts, numbering, history."""
import math
import pprint

import pytest

from ipkernel.engine import Interpreter
from ipkernel.error import ResultEvicted

pytestmark = pytest.mark.tier1


@pytest.fixture
def interp():
    return Interpreter()


def _optional_keys(result):
    return {k for k in result if k not in ("number", "input")}


# --------------------------------------------------------------------------- the acceptance commands

def test_valid_command_runs_and_reports_its_input(interp, valid_command):
    result = interp.execute(valid_command)
    assert result["number"] == 1
    assert result["input"] == {"raw": valid_command, "translated": valid_command}
    assert _optional_keys(result) <= {"stdout", "stderr", "display"}
    assert "traceback" not in result


def test_valid_commands_run_one_after_another_in_one_namespace(interp):
    from_table = [
        "a = 5", "b=10", "a=5; b=10; c=a+b", "if 1 < 2: a = 5",
        "from math import cos;\nx = 1.0*cos(0.5)", "x=1.0; y=2.0;",
    ]
    for n, source in enumerate(from_table, start=1):
        assert interp.execute(source)["number"] == n
    ns = interp.user_ns
    assert (ns["a"], ns["b"], ns["c"], ns["x"], ns["y"]) == (5, 10, 15, 1.0, 2.0)
    assert ns["cos"] is math.cos


def test_invalid_command_raises_its_own_type(interp, invalid_command):
    source, expected = invalid_command
    with pytest.raises(BaseException) as info:
        interp.execute(source)
    assert type(info.value) is expected


def test_invalid_command_still_consumes_a_number_and_is_retrievable(interp, invalid_command):
    source, expected = invalid_command
    interp.execute("before = 1")
    with pytest.raises(expected):
        interp.execute(source)
    stored = interp.get_result(2)
    assert stored["number"] == 2
    assert stored["input"]["raw"] == source
    assert "traceback" in stored
    assert interp.execute("after = 1")["number"] == 3


# --------------------------------------------------------------------------- display

def test_displayed_value_of_trailing_expression(interp):
    result = interp.execute("import math; 2.0*math.pi")
    assert result["display"] == {"pprint": pprint.pformat(2.0 * math.pi), "repr": repr(2.0 * math.pi)}
    assert "stdout" not in result and "stderr" not in result


def test_display_uses_pformat_and_repr_of_the_value(interp):
    result = interp.execute("{'k%02d' % i: list(range(i)) for i in range(12)}")
    value = {"k%02d" % i: list(range(i)) for i in range(12)}
    assert result["display"]["repr"] == repr(value)
    assert result["display"]["pprint"] == pprint.pformat(value)
    assert result["display"]["pprint"] != result["display"]["repr"]  # pformat wraps long dicts


def test_assignment_only_has_no_optional_keys(interp):
    result = interp.execute("q = 42")
    assert set(result) == {"number", "input"}
    assert interp.user_ns["q"] == 42


def test_none_is_not_displayed(interp):
    result = interp.execute("None")
    assert "display" not in result


def test_last_non_none_expression_is_displayed(interp):
    assert interp.execute("1; 2")["display"]["repr"] == "2"
    assert interp.execute("3; None")["display"]["repr"] == "3"
    assert interp.execute("'shown'\nz = 4")["display"]["repr"] == "'shown'"


def test_expressions_inside_blocks_are_not_displayed(interp):
    result = interp.execute("def g():\n    99\n    return None\ng()")
    assert "display" not in result
    result = interp.execute("for i in range(3):\n    i * 100\n")
    assert "display" not in result


def test_displayed_value_goes_to_underscore_and_out(interp):
    first = interp.execute("6 * 7")
    assert interp.user_ns["_"] == 42
    second = interp.execute("_ + 1")
    assert second["display"]["repr"] == "43"
    assert interp.user_ns["Out"][first["number"]] == 42
    assert interp.user_ns["Out"][second["number"]] == 43


# --------------------------------------------------------------------------- output capture

def test_stdout_is_captured(interp, capsys):
    result = interp.execute("print('hello')\nprint('world', end='!')")
    assert result["stdout"] == "hello\nworld!"
    assert "stderr" not in result
    assert capsys.readouterr().out == ""


def test_stderr_is_captured(interp, capsys):
    result = interp.execute("import sys\nprint('oops', file=sys.stderr)")
    assert result["stderr"] == "oops\n"
    assert "stdout" not in result
    assert capsys.readouterr().err == ""


def test_stdout_and_display_together(interp):
    result = interp.execute("print('side effect'); 7")
    assert result["stdout"] == "side effect\n"
    assert result["display"]["repr"] == "7"


def test_output_before_a_failure_is_kept_with_the_failed_result(interp):
    with pytest.raises(ZeroDivisionError):
        interp.execute("print('partial')\n1/0\nprint('never')")
    stored = interp.get_result(1)
    assert stored["stdout"] == "partial\n"
    assert "traceback" in stored


def test_capture_does_not_leak_between_commands(interp):
    interp.execute("print('one')")
    assert "stdout" not in interp.execute("x = 1")


# --------------------------------------------------------------------------- statement splitting

def test_semicolons_separate_statements(interp):
    interp.execute("a = 1; b = a + 1; c = b * 3;")
    assert (interp.user_ns["a"], interp.user_ns["b"], interp.user_ns["c"]) == (1, 2, 6)


def test_trailing_whitespace_and_blank_lines_are_accepted(interp):
    result = interp.execute("w = 3   \n\n    \n\t\n")
    assert interp.user_ns["w"] == 3
    assert result["number"] == 1


def test_multi_line_def_then_call(interp):
    result = interp.execute("def f(x):\n    y = x + 1\n    return y * 2\n\nf(4)\n")
    assert result["display"]["repr"] == "10"
    assert interp.user_ns["f"](1) == 4


def test_multi_line_class_and_decorator(interp):
    source = ("import functools\n"
              "class Box:\n"
              "    def __init__(self, v):\n"
              "        self.v = v\n"
              "\n"
              "    @functools.cached_property\n"
              "    def double(self):\n"
              "        return self.v * 2\n"
              "Box(21).double\n")
    assert interp.execute(source)["display"]["repr"] == "42"


def test_unicode_source(interp):
    result = interp.execute("s = 'héllo ☃ 数学'\nπ = 3.14\nprint(s)\nlen(s)")
    assert result["stdout"] == "héllo ☃ 数学\n"
    assert interp.user_ns["π"] == 3.14
    assert result["display"]["repr"] == str(len("héllo ☃ 数学"))


def test_triple_quoted_string_with_newline(interp):
    result = interp.execute('str("""a\nb""")')
    assert result["display"]["repr"] == repr("a\nb")


def test_parenthesised_expression_over_two_lines_is_one_statement(interp):
    result = interp.execute("(1\n + 1)")
    assert result["display"]["repr"] == "2"
    assert result["number"] == 1
    assert interp.execute("z = 0")["number"] == 2  # one command, one number


def test_two_expression_lines_are_two_statements(interp):
    result = interp.execute("1\n5\n")
    assert result["display"]["repr"] == "5"


def test_multi_line_parenthesised_expression_with_trailing_blank_lines(interp):
    result = interp.execute("(1 +\n 2 +\n 3)\n\n\n")
    assert result["display"]["repr"] == "6"


def test_syntax_error_raises_and_consumes_a_number(interp):
    with pytest.raises(SyntaxError):
        interp.execute("x = = 1")
    assert "traceback" in interp.get_result(1)
    assert interp.execute("x = 1")["number"] == 2


def test_statements_before_a_failure_have_run(interp):
    with pytest.raises(NameError):
        interp.execute("done = 'yes'\nundefined_name_qq\nnot_done = 1")
    assert interp.user_ns["done"] == "yes"
    assert "not_done" not in interp.user_ns


# --------------------------------------------------------------------------- numbering and history

def test_numbering_starts_at_one_and_increments(interp):
    numbers = [interp.execute(f"v{i} = {i}")["number"] for i in range(5)]
    assert numbers == [1, 2, 3, 4, 5]


def test_failed_command_consumes_a_number(interp):
    assert interp.execute("a = 1")["number"] == 1
    with pytest.raises(ZeroDivisionError):
        interp.execute("1/0")
    assert interp.execute("b = 2")["number"] == 3
    assert interp.get_result(2)["number"] == 2


def test_get_result_returns_the_stored_dict(interp):
    results = [interp.execute(src) for src in ("a = 1", "print(a)", "a + 41")]
    for result in results:
        assert interp.get_result(result["number"]) == result
    assert interp.get_result() == results[-1]
    assert interp.get_result(None) == results[-1]


def test_get_result_on_fresh_interpreter_raises_index_error(interp):
    with pytest.raises(IndexError):
        interp.get_result()
    with pytest.raises(IndexError):
        interp.get_result(1)


def test_get_result_of_future_number_raises_index_error_not_evicted(interp):
    interp.execute("a = 1")
    with pytest.raises(IndexError) as info:
        interp.get_result(10)
    assert not isinstance(info.value, ResultEvicted)


@pytest.mark.parametrize("bad", ["1", 1.0, [1], True])
def test_get_result_with_non_int_raises_type_error(interp, bad):
    interp.execute("a = 1")
    with pytest.raises(TypeError):
        interp.get_result(bad)


def test_history_cap_evicts_old_results():
    interp = Interpreter(history_cap=3)
    for i in range(5):
        interp.execute(f"x = {i}")
    for evicted in (1, 2):
        with pytest.raises(ResultEvicted):
            interp.get_result(evicted)
    assert [interp.get_result(n)["input"]["raw"] for n in (3, 4, 5)] == ["x = 2", "x = 3", "x = 4"]
    with pytest.raises(IndexError) as info:
        interp.get_result(6)
    assert not isinstance(info.value, ResultEvicted)


def test_history_cap_bounds_out_as_well():
    interp = Interpreter(history_cap=2)
    for i in range(6):
        interp.execute(f"{i} + 100")
    assert sorted(interp.user_ns["Out"]) == [5, 6]
    assert interp.user_ns["_"] == 105


def test_evicted_is_an_index_error():
    interp = Interpreter(history_cap=1)
    interp.execute("a = 1")
    interp.execute("a = 2")
    with pytest.raises(IndexError):
        interp.get_result(1)


def test_returned_dict_is_not_the_stored_one(interp):
    result = interp.execute("a = 1")
    result["number"] = 999
    result["input"] = None
    assert interp.get_result(1)["number"] == 1


# --------------------------------------------------------------------------- namespace

def test_user_ns_is_the_execution_namespace(interp):
    interp.user_ns["pushed"] = [1, 2]
    interp.execute("pushed.append(3); made = len(pushed)")
    assert interp.user_ns["pushed"] == [1, 2, 3]
    assert interp.user_ns["made"] == 3


def test_code_runs_as_main(interp):
    assert interp.execute("__name__")["display"]["repr"] == repr("__main__")


def test_functions_defined_by_user_see_the_namespace(interp):
    interp.execute("k = 10\ndef addk(x):\n    return x + k")
    interp.execute("k = 20")
    assert interp.execute("addk(1)")["display"]["repr"] == "21"


def test_complete_keywords_and_names(interp):
    interp.execute("my_variable_1 = 1; my_variable_2 = 2")
    assert "import" in interp.complete("impo")
    completions = interp.complete("my_var")
    assert completions == ["my_variable_1", "my_variable_2"]


def test_complete_attributes(interp):
    interp.execute("import os")
    completions = interp.complete("os.pa")
    assert "os.path" in completions and "os.pardir" in completions
    assert all(c.startswith("os.pa") for c in completions)
    assert completions == sorted(completions)


# -- compiled cells kept for commands sent again --------------------------------------


def test_a_repeated_command_runs_every_time(interp):
    interp.execute("n = 0")
    for _ in range(3):
        interp.execute("n += 1")
    assert interp.user_ns["n"] == 3


def test_a_repeated_failing_command_names_its_own_cell(interp):
    from ipkernel.engine.interpreter import cell_filename

    for _ in range(2):
        with pytest.raises(ZeroDivisionError) as info:
            interp.execute("1/0")
        number = interp.counter - 1
        assert info.value.__traceback__ is not None
        text = interp.get_result(number)["traceback"]["plain"]
        assert cell_filename(number) in text
        assert cell_filename(number - 1) not in text


def test_a_repeated_expression_is_displayed_each_time(interp):
    interp.execute("k = 1")
    assert interp.execute("k")["display"]["repr"] == "1"
    interp.execute("k = 2")
    assert interp.execute("k")["display"]["repr"] == "2"


def test_functions_of_a_repeated_cell_carry_their_own_cell_name(interp):
    from ipkernel.engine.interpreter import cell_filename

    for _ in range(2):
        interp.execute("def f():\n    return 1")
        number = interp.counter - 1
        assert interp.user_ns["f"].__code__.co_filename == cell_filename(number)


def test_the_compiled_cell_store_is_bounded():
    from ipkernel.engine.interpreter import CellCompiler

    compiler = CellCompiler(size=3)
    for i in range(10):
        compiler.steps(f"x = {i}", "<cell>")
    assert len(compiler._kept) == 3
    assert [s for s in compiler._kept] == ["x = 7", "x = 8", "x = 9"]


# --------------------------------------------------------------------------- issue 13: bind

@pytest.mark.tier1
@pytest.mark.parametrize("key", ["__builtins__", "a b", "", "for", "x-y", "é x"])
def test_bind_refuses_names_code_cannot_use_and_binds_nothing(key):
    shell = Interpreter()
    with pytest.raises(ValueError) as info:
        shell.bind({"fine_zz": 1, key: 2})
    assert repr(key) in str(info.value)
    assert "fine_zz" not in shell.user_ns
    assert shell.execute("len('abc')")["display"]["repr"] == "3"


@pytest.mark.tier1
def test_bind_accepts_identifiers_including_soft_keywords_and_unicode():
    shell = Interpreter()
    shell.bind({"match": 1, "_": 2, "é": 3, "__name_like__": 4})
    assert shell.execute("match + é + __name_like__")["display"]["repr"] == "8"


def test_capped_history_keeps_the_newest_and_survives_keys_deleted_by_hand():
    from ipkernel.engine.interpreter import CappedHistory
    history = CappedHistory(3)
    for number in range(10):
        history[number] = f"result {number}"
    assert list(history) == [7, 8, 9]
    del history[8]
    history[10] = "result 10"
    history[11] = "result 11"
    assert list(history) == [9, 10, 11]
    for number in range(100, 200):  # the first pushes 9 out; the rest fit beside 10, 11
        history[number] = "short-lived"
        del history[number]
    assert list(history) == [10, 11] and len(history._order) <= 2 * 3 + 16
    history[12], history[13] = "result 12", "result 13"
    assert list(history) == [11, 12, 13]


def test_capped_history_pickles_with_its_cap():
    import cloudpickle

    from ipkernel.engine.interpreter import CappedHistory
    history = CappedHistory(2)
    history[1], history[2] = "a", "b"
    copy = cloudpickle.loads(cloudpickle.dumps(history))
    assert type(copy) is CappedHistory and dict(copy) == {1: "a", 2: "b"} and copy.cap == 2
    copy[3] = "c"
    assert dict(copy) == {2: "b", 3: "c"}


def test_the_carets_of_a_traceback_stand_under_the_failing_expression():
    interp = Interpreter()
    with pytest.raises(ZeroDivisionError):
        interp.execute("x = 1/0")
    lines = interp.get_result(1)["traceback"]["plain"].splitlines()
    source = lines.index("    x = 1/0")
    assert lines[source + 1] == "        ~^~"


def test_task_sources_are_kept_in_linecache_newest_first_and_bounded():
    import linecache

    from ipkernel.engine import interpreter

    names = [interpreter.task_filename(f"x = {k}\ny = 1 / 0") for k in range(
        interpreter.TASK_SOURCES_KEPT + 10)]
    assert len(set(names)) == len(names) and all(n.startswith("<task-input-") for n in names)
    assert linecache.getline(names[-1], 1) == f"x = {interpreter.TASK_SOURCES_KEPT + 9}\n"
    assert linecache.getline(names[-1], 2) == "y = 1 / 0\n"   # a last line gets its newline
    assert all(n not in linecache.cache for n in names[:10])   # the oldest forgotten
    assert all(n in linecache.cache for n in names[10:])
