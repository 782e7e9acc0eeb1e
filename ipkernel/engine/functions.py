"""Rebinding shipped functions to an engine's user namespace.

A function pushed, applied or mapped on an engine runs with the engine's
user namespace as its globals, so it can read engine variables such as
``id`` or data pushed earlier.  The globals it used where it was defined
(cloudpickle ships those with functions defined interactively) stay
available: each one the engine does not define is added to the namespace.
A name that an earlier shipped function added is refreshed, so re-sending a
function after changing a client-side constant uses the new value; a name the
user defined on the engine is never overwritten.
"""
import types


def referenced_names(code):
    """Global names used by ``code`` and the code objects nested in it."""
    names = set(code.co_names)
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            names |= referenced_names(const)
    return names


class FunctionBinder:
    """Rebinds functions to one user namespace and tracks the names it added."""

    def __init__(self, namespace):
        self.namespace = namespace
        self._added = {}

    def bind(self, func):
        """Return ``func`` rebound to the namespace (other callables unchanged)."""
        if not isinstance(func, types.FunctionType) or func.__globals__ is self.namespace:
            return func
        ns = self.namespace
        origin = func.__globals__
        for name in referenced_names(func.__code__):
            if name not in origin:
                continue
            value = origin[name]
            if name not in ns or (name in self._added and ns[name] is self._added[name]):
                ns[name] = value
                self._added[name] = value
        bound = types.FunctionType(func.__code__, ns, func.__name__,
                                   func.__defaults__, func.__closure__)
        bound.__kwdefaults__ = func.__kwdefaults__
        bound.__qualname__ = func.__qualname__
        bound.__doc__ = func.__doc__
        bound.__dict__.update(func.__dict__)
        bound.__module__ = "__main__"
        return bound

    def forget(self):
        """Forget which names were added (after the namespace was cleared)."""
        self._added.clear()


class SingleArguments:
    """One map part whose items are each the only argument of the function.

    A map over one list, tuple or range sends its slices wrapped in this
    instead of a list of 1-tuples: a range slice pickles in a few bytes, and
    no tuple is built, pickled or unpacked per item.
    """

    __slots__ = ("items",)

    def __init__(self, items):
        self.items = items

    def __reduce__(self):
        return SingleArguments, (self.items,)
