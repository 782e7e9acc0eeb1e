"""Engine-side helpers of the task farm, run through ``IEngineCore.apply``.

They live in the engine package so their frames are left out of user
tracebacks.  :func:`string_task` is rebound to the user namespace by
``apply``: it uses only builtins and its arguments, so rebinding adds no names
to the namespace.  :class:`DependCheck` is an object, not a function, so it
is not rebound at all.
"""
from ipkernel import serialize
from ipkernel.engine.properties import get_engine


def string_task(push, expression, pull):
    """Push ``push``, run ``expression``, fire with ``{name: value}`` for ``pull``."""
    ns = globals()
    __import__("ipkernel.namecheck", fromlist=["check_push_names"]).check_push_names(
        push, "the task's push")
    ns.update(push)
    interpreter = __import__("ipkernel.engine.interpreter", fromlist=["_AST_LOCK"])
    with interpreter._AST_LOCK:   # the source in linecache: its traceback shows the lines
        code = compile(expression, interpreter.task_filename(expression), "exec")
    exec(code, ns)
    out = {}
    for name in pull:
        if name not in ns:
            raise NameError(f"name {name!r} is not defined")
        out[name] = ns[name]
    return out


class DependCheck:
    """Call a task's ``depend(properties)`` with the engine's properties.

    Returns None when the engine may run the task, else the reason it may
    not (a str).  It never raises: a failed command would clear the
    engine's queue of other clients' commands.
    """

    def __init__(self, depend):
        self.depend = depend if isinstance(depend, serialize.Serialized) else serialize.serialize(depend)

    def __call__(self, engine_id):
        depend = serialize.unserialize(self.depend)
        properties = get_engine(engine_id).properties.copy()
        try:
            ok = depend(properties)
        except Exception as exc:
            return f"depend raised {type(exc).__name__}: {exc}"
        return None if ok else f"engine {engine_id} does not satisfy the task's depend"


class DependGate(DependCheck):
    """Like :class:`DependCheck` but raises ``TaskRejectError`` instead of
    returning the reason: the controller of the network task farm sees only
    the error's record, never an unpickled value."""

    def __call__(self, engine_id):
        reason = super().__call__(engine_id)
        if reason is not None:
            from ipkernel.error import TaskRejectError
            raise TaskRejectError(reason)


class CaptureOutput:
    """A task's function whose output is kept with its result: what it
    prints goes back to the client in a :class:`Captured` (the engine runs
    ``func`` as ``apply`` would, see ``EngineService._call_function``)."""

    def __init__(self, func):
        self.func = func

    def run(self, call, args, kwargs, engine_id):
        """``call(func, args, kwargs)`` with its stdout/stderr captured: its
        value, or a :class:`Captured` of it when it printed; an exception
        it raises carries the text in ``_ipkernel_stdout``/``_ipkernel_stderr``."""
        from ipkernel.engine.capture import capture

        with capture() as (out, err):
            try:
                value = call(self.func, args, kwargs)
            except BaseException as exc:
                for name, buffer in (("_ipkernel_stdout", out), ("_ipkernel_stderr", err)):
                    try:
                        setattr(exc, name, buffer.getvalue())
                    except (AttributeError, TypeError):
                        pass
                raise
        if out.tell() or err.tell():
            return Captured(value, out.getvalue(), err.getvalue(), engine_id)
        return value


class Captured:
    """A task's value with what it printed (``stdout``, ``stderr``) on
    engine ``engine_id``; unwrapped by the client (:func:`uncaptured`)."""

    __slots__ = ("value", "stdout", "stderr", "engine_id")

    def __init__(self, value, stdout, stderr, engine_id):
        self.value, self.stdout, self.stderr, self.engine_id = value, stdout, stderr, engine_id

    def __reduce__(self):
        return Captured, (self.value, self.stdout, self.stderr, self.engine_id)


def uncaptured(value):
    """``(value, stdout, stderr)`` of a task result that may be :class:`Captured`
    (``''`` when it printed nothing)."""
    if isinstance(value, Captured):
        return value.value, value.stdout, value.stderr
    return value, "", ""
