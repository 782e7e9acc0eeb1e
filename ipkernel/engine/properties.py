"""Engine properties: a small dict of plain data per engine.

Properties describe an engine (``{'gpu': True, 'memory_gb': 64}``) so tasks
can pick engines.  They are plain data (None, bool, int, float, str, bytes,
and lists, tuples and dicts of those) so they cross the controller as
ordinary wire types and nothing needs unpickling.  Values are copied in and
out: mutating a fetched value never changes the stored one.

User code on an engine reaches its own properties with
``get_engine(id).properties``.
"""
import copy

from ipkernel.error import InvalidProperty, KernelError

_SCALARS = (type(None), bool, int, float, str, bytes)
_MAX_DEPTH = 32


def check_plain(value, what="property value", _depth=0):
    """Raise :class:`InvalidProperty` unless ``value`` is plain data."""
    if _depth > _MAX_DEPTH:
        raise InvalidProperty(f"{what} is nested more than {_MAX_DEPTH} levels deep")
    if isinstance(value, _SCALARS):
        return
    if isinstance(value, (list, tuple)):
        for item in value:
            check_plain(item, what, _depth + 1)
        return
    if isinstance(value, dict):
        for key, item in value.items():
            check_plain(key, what, _depth + 1)
            check_plain(item, what, _depth + 1)
        return
    raise InvalidProperty(
        f"{what} {value!r} of type {type(value).__name__} is not plain data: properties hold "
        f"only None, bool, int, float, str, bytes and lists, tuples and dicts of those")


class StrictDict(dict):
    """A dict of plain data with copy-in/copy-out semantics.

    ``modified`` is set by every change, so a watcher can tell when to
    re-read it.
    """

    def __init__(self, *args, **kwargs):
        super().__init__()
        self.update(*args, **kwargs)
        self.modified = False

    def __setitem__(self, key, value):
        if not isinstance(key, str):
            raise InvalidProperty(f"property keys are str, not {type(key).__name__} ({key!r})")
        check_plain(value, f"property {key!r}")
        super().__setitem__(key, copy.deepcopy(value))
        self.modified = True

    def __getitem__(self, key):
        return copy.deepcopy(super().__getitem__(key))

    def get(self, key, default=None):
        """A copy of the value of ``key``, or ``default``."""
        return self[key] if key in self else default

    def __delitem__(self, key):
        super().__delitem__(key)
        self.modified = True

    def __iter__(self):
        # Overriding __iter__ makes dict(sd) and {**sd} go through __getitem__
        # (copies) instead of CPython's fast path over the stored values.
        return super().__iter__()

    def update(self, *args, **kwargs):
        """Check every item first, then store copies: all or nothing."""
        new = dict(*args, **kwargs)
        for key, value in new.items():
            if not isinstance(key, str):
                raise InvalidProperty(f"property keys are str, not {type(key).__name__} ({key!r})")
            check_plain(value, f"property {key!r}")
        for key, value in new.items():
            super().__setitem__(key, copy.deepcopy(value))
        if new:
            self.modified = True

    def __ior__(self, other):
        self.update(other)
        return self

    def setdefault(self, key, default=None):
        """Store a copy of ``default`` under ``key`` unless it is set; a copy of the value."""
        if key not in self:
            self[key] = default
        return self[key]

    def pop(self, key, *default):
        """Remove ``key``; its value (or ``default``; KeyError without one)."""
        value = super().pop(key, *default)
        self.modified = True
        return copy.deepcopy(value)

    def popitem(self):
        """Remove and return the last ``(key, value)`` pair stored."""
        key, value = super().popitem()
        self.modified = True
        return key, value

    def clear(self):
        """Remove every property."""
        super().clear()
        self.modified = True

    def values(self):
        """A list of copies of the values."""
        return [self[k] for k in self]

    def items(self):
        """A list of ``(key, copy of value)`` pairs."""
        return [(k, self[k]) for k in self]

    def copy(self):
        """A plain dict of copies."""
        return {k: self[k] for k in self}

    def sub_dict(self, *keys):
        """Return a plain dict of copies of ``keys`` (KeyError for an unknown one)."""
        return {k: self[k] for k in keys}

    def __reduce__(self):
        return (StrictDict, (self.copy(),))


class EngineAPI:
    """What user code on an engine sees of its engine: ``id`` and ``properties``."""

    __slots__ = ("id", "properties", "_frozen")

    def __init__(self, id):
        object.__setattr__(self, "id", id)
        object.__setattr__(self, "properties", StrictDict())
        object.__setattr__(self, "_frozen", True)

    def __setattr__(self, name, value):
        raise KernelError(f"cannot set {name!r}: the engine API object is read-only "
                          f"(change get_engine(id).properties instead)")

    def __delattr__(self, name):
        raise KernelError(f"cannot delete {name!r}: the engine API object is read-only")

    def __repr__(self):
        return f"<EngineAPI id={self.id!r} properties={self.properties.copy()!r}>"


_registry = {}


def get_engine(id):
    """Return the :class:`EngineAPI` of engine ``id`` in this process (created on demand)."""
    api = _registry.get(id)
    if api is None:
        api = _registry[id] = EngineAPI(id)
    return api


def drop_engine(id):
    """Forget the :class:`EngineAPI` of engine ``id`` (no error if unknown)."""
    _registry.pop(id, None)
