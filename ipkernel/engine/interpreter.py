"""The interpreter: one user namespace, numbered commands, a capped history.

Pure and synchronous: :class:`ipkernel.engine.EngineService` decides which
thread runs it.
"""
import ast
import builtins
import itertools
import linecache
import os
import pprint
import rlcompleter
import threading
import traceback
import types
from collections import deque

from ipkernel.engine.capture import capture
from ipkernel.error import ResultEvicted
from ipkernel.namecheck import check_push_names

# Converting between Python AST objects and the compiler's AST keeps its
# recursion bookkeeping per interpreter, not per thread, before CPython
# 3.11.8 / 3.12.1 (gh-106905): two engines parsing at once in one process
# (in-process clusters, tests) then fail with a spurious SystemError.  The
# conversions are quick, so they are simply serialised.
_AST_LOCK = threading.Lock()


def _parse(source, filename):
    with _AST_LOCK:
        return ast.parse(source, filename)


def _compile(tree, filename, mode):
    with _AST_LOCK:
        return compile(tree, filename, mode)


#: Cells kept compiled, by source text (oldest dropped first).
CELL_CACHE_SIZE = 256
#: Longest source text whose compiled form is kept.
CELL_CACHE_SOURCE = 4096


class CellCompiler:
    """Compiles a cell into one ``(is_expression, code)`` step per statement.

    The same short command is often sent again and again (``execute`` in a
    loop); parsing and compiling it costs more than running it.  A cell
    whose code defines nothing (no functions, classes, lambdas or
    comprehensions, whose code objects would keep the old file name) is
    kept, by source text, and reused under the new cell's file name.
    """

    def __init__(self, size=CELL_CACHE_SIZE):
        self.size = size
        self._kept = {}

    def steps(self, source, filename):
        kept = self._kept.get(source)
        if kept is not None:
            return [(is_expr, code.replace(co_filename=filename)) for is_expr, code in kept]
        steps = []
        for node in _parse(source, filename).body:
            if isinstance(node, ast.Expr):
                steps.append((True, _compile(ast.Expression(node.value), filename, "eval")))
            else:
                steps.append((False, _compile(ast.Module([node], type_ignores=[]), filename,
                                              "exec")))
        if len(source) <= CELL_CACHE_SOURCE and not any(_nests_code(c) for _, c in steps):
            if len(self._kept) >= self.size:
                del self._kept[next(iter(self._kept))]
            self._kept[source] = steps
        return steps


def _nests_code(code):
    return any(isinstance(const, types.CodeType) for const in code.co_consts)

#: Names seeded by the interpreter that ``keys()`` does not report.
HIDDEN_NAMES = frozenset({
    "__name__", "__builtins__", "__doc__", "In", "Out", "_ih", "_oh", "_", "__", "___",
    "input", "raw_input",
})

DEFAULT_HISTORY_CAP = 1000


class CappedHistory(dict):
    """A dict keyed by command number that keeps only the newest ``cap`` entries."""

    def __init__(self, cap):
        super().__init__()
        self.cap = cap
        # Keys in the order they came: finding the oldest as next(iter(self))
        # gets slower with every entry deleted before it (a dict scans the
        # slots they leave), and this runs for every command.
        self._order = deque()

    def __setitem__(self, key, value):
        order = self._order
        if key not in self:
            order.append(key)
        dict.__setitem__(self, key, value)
        while len(self) > self.cap and order:
            oldest = order.popleft()
            if oldest in self:  # (unless deleted meanwhile)
                dict.__delitem__(self, oldest)
        if len(order) > 2 * self.cap + 16:  # keys deleted by hand pile up: forget them
            self._order = deque(dict.fromkeys(k for k in order if k in self))

    def __reduce__(self):
        # rebuilt through __init__ (pickle would otherwise set the items
        # before the attributes __setitem__ needs)
        return (type(self), (self.cap,), None, None, iter(self.items()))


#: Why input() cannot be answered when no client waits interactively.
NO_INPUT = ("input() is not available on an engine: engines have no terminal; push the "
            "value from the client instead (input() is answered only in code run by %px or "
            "a blocking streaming execute from IPython or Jupyter)")


def _no_input(prompt=""):
    raise RuntimeError(NO_INPUT)


def remember_source(filename, source):
    """Put ``source`` in linecache under ``filename`` (a pseudo file name), so
    tracebacks of code compiled with that name show its lines."""
    lines = source.splitlines(keepends=True)
    if lines and not lines[-1].endswith("\n"):
        # (3.11's traceback places its carets one column off on a last line without one)
        lines[-1] += "\n"
    linecache.cache[filename] = (len(source), None, lines, filename)


#: StringTask sources kept in linecache (the newest; each a few lines).
TASK_SOURCES_KEPT = 256
_task_sources = deque()
_task_numbers = itertools.count(1)


def task_filename(source):
    """A new pseudo file name (``<task-input-N>``) for a StringTask's
    ``source``, remembered in linecache; the oldest beyond
    :data:`TASK_SOURCES_KEPT` are forgotten.  Call it holding ``_AST_LOCK``."""
    filename = f"<task-input-{next(_task_numbers)}>"
    remember_source(filename, source)
    _task_sources.append(filename)
    while len(_task_sources) > TASK_SOURCES_KEPT:
        linecache.cache.pop(_task_sources.popleft(), None)
    return filename


def cell_filename(number):
    """The pseudo file name given to the source of command ``number``."""
    return f"<ipkernel-input-{number}>"


class Interpreter:
    """Runs source text in ``user_ns`` and remembers each command's result dict.

    ``history_cap`` bounds the number of result dicts (and ``In``/``Out``
    entries) kept; older ones give :class:`ipkernel.error.ResultEvicted`.
    """

    def __init__(self, history_cap=DEFAULT_HISTORY_CAP):
        if not isinstance(history_cap, int) or history_cap < 1:
            raise ValueError(f"history_cap must be a positive int, not {history_cap!r}")
        self.history_cap = history_cap
        self.counter = 1
        self._messages = CappedHistory(history_cap)
        self._inputs = CappedHistory(history_cap)
        self._outputs = CappedHistory(history_cap)
        self.user_ns = {}
        self._compiler = CellCompiler()
        #: ``ask(prompt) -> str``: how ``input()`` in user code is answered
        #: (None: it raises RuntimeError, engines have no terminal).
        self.input_hook = None
        self._seed()

    def _seed(self):
        self.user_ns.update({
            "__name__": "__main__",
            "__builtins__": builtins,
            "In": self._inputs, "_ih": self._inputs,
            "Out": self._outputs, "_oh": self._outputs,
            "_": None, "__": None, "___": None,
            "input": self._input, "raw_input": self._input,
        })

    def _input(self, prompt=""):
        hook = self.input_hook
        if hook is None:
            return _no_input(prompt)
        return hook(str(prompt))

    # -- the namespace ---------------------------------------------------------

    def check_names(self, namespace, method="push"):
        """TypeError or ValueError (naming the key) unless a push may bind
        every key of ``namespace``; see :func:`ipkernel.namecheck.check_push_names`."""
        check_push_names(namespace, method)

    def bind(self, namespace, method="push"):
        """Bind the names of the dict ``namespace`` in the user namespace, all
        or none: a key a push may not bind refuses the whole dict."""
        self.check_names(namespace, method)
        self.user_ns.update(namespace)

    # -- running code --------------------------------------------------------

    def execute(self, source):
        """Run ``source``; return its result dict, or raise what it raised.

        The result dict has ``number`` and ``input``, and ``stdout``,
        ``stderr``, ``display`` when there is something to report.  A failed
        command is still numbered and stored, with ``traceback``.
        """
        if not isinstance(source, str):
            raise TypeError(f"execute() takes source text (str), not {type(source).__name__}")
        number = self.counter
        self.counter += 1
        filename = cell_filename(number)
        message = {"number": number, "input": {"raw": source, "translated": source}}
        self._inputs[number] = source
        self._remember_source(filename, source)
        displayed = None
        error = None
        with capture() as (out, err):
            try:
                for is_expr, code in self._compiler.steps(source, filename):
                    if is_expr:
                        value = eval(code, self.user_ns)
                        if value is not None:
                            displayed = value
                            self._display(number, value)
                    else:
                        exec(code, self.user_ns)
            except BaseException as exc:  # noqa: B902 - user code may raise anything
                error = exc
        if out.getvalue():
            message["stdout"] = out.getvalue()
        if err.getvalue():
            message["stderr"] = err.getvalue()
        if displayed is not None:
            message["display"] = {"pprint": pprint.pformat(displayed), "repr": repr(displayed)}
        if error is not None:
            message["traceback"] = {"plain": format_user_traceback(error)}
        self._messages[number] = message
        if error is not None:
            raise error
        return dict(message)

    def _display(self, number, value):
        ns = self.user_ns
        ns["___"], ns["__"], ns["_"] = ns.get("__"), ns.get("_"), value
        self._outputs[number] = value

    def _remember_source(self, filename, source):
        remember_source(filename, source)
        linecache.cache.pop(cell_filename(self.counter - 1 - self.history_cap), None)

    # -- history ----------------------------------------------------------------

    def get_result(self, i=None):
        """Return a copy of the result dict of command ``i`` (None: the latest)."""
        if i is None:
            if self.counter == 1:
                raise IndexError("no command has run on this engine yet")
            i = self.counter - 1
        if isinstance(i, bool) or not isinstance(i, int):
            raise TypeError(f"get_result() takes a command number (int) or None, not {i!r}")
        if i in self._messages:
            return dict(self._messages[i])
        if 1 <= i < self.counter:
            raise ResultEvicted(
                f"the result of command {i} was dropped from the engine's history, "
                f"which keeps the last {self.history_cap} commands; start engines with a "
                f"larger history_cap to keep more")
        raise IndexError(f"no command number {i} on this engine (commands run: {self.counter - 1})")

    # -- completion -------------------------------------------------------------

    def complete(self, text, line=None):
        """Return the sorted completions of ``text`` in the user namespace."""
        completer = rlcompleter.Completer(self.user_ns)
        matches = set()
        state = 0
        while True:
            try:
                match = completer.complete(text, state)
            except Exception:  # a property raising during attribute completion
                break
            if match is None:
                break
            matches.add(match.rstrip("( "))
            state += 1
        return sorted(matches)


_ENGINE_DIR = os.path.dirname(os.path.abspath(__file__)) + os.sep


def format_user_traceback(exc):
    """Format ``exc`` with its traceback, leaving out the engine's own frames
    (the leading ones, through which the exception reached user code)."""
    tb = exc.__traceback__
    while tb is not None and tb.tb_frame.f_code.co_filename.startswith(_ENGINE_DIR):
        tb = tb.tb_next
    if isinstance(exc, SyntaxError):
        tb = None
    with _AST_LOCK:  # 3.11's traceback module parses source lines to place its carets
        return "".join(traceback.format_exception(type(exc), exc, tb))
