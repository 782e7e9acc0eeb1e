"""Views: a :class:`~ipkernel.client.MultiEngineClient` bound to some engines.

::

    mec[0].execute("a = 1")          # engine 0
    mec[[0, 2]].pull("a")            # engines 0 and 2
    mec[1:3].map(f, range(100))      # the 2nd and 3rd registered engines
    everyone = mec[:]                # every engine registered now (a fixed list)
    everyone["b"] = 5                # push b = 5 to them

A :class:`View` has the client's methods that take ``targets``, with the
view's targets (``targets=`` is refused: make another view) and the view's
:attr:`~ipkernel.client.View.block` as the default of ``block``.
"""
import functools
import inspect

from ipkernel.client.blocking import MultiEngineClient, _check_block
from ipkernel.error import InvalidEngineID

__all__ = ["View", "select_targets"]


def select_targets(key, ids):
    """The targets ``client[key]`` means, given the sorted registered ``ids``.

    An int is an engine id (negative: counted from the end of ``ids``); a
    list, tuple or range holds engine ids; a slice is over ``ids``, like a
    list slice.  An unknown id, or a selection of no engine, raises
    :class:`~ipkernel.error.InvalidEngineID`.
    """
    if isinstance(key, slice):
        chosen = list(ids[key])
        if not chosen:
            raise InvalidEngineID(f"the slice {_show_slice(key)} selects no engine of the "
                                  f"registered ones {ids}")
        return chosen
    if isinstance(key, int) and not isinstance(key, bool):
        if key < 0 and -key <= len(ids):
            return ids[key]
        if key not in ids:
            raise InvalidEngineID(f"no engine {key}: the registered engines are {ids}")
        return key
    if isinstance(key, (list, tuple, range)):
        chosen = list(key)
        bad = [t for t in chosen if isinstance(t, bool) or not isinstance(t, int)]
        if bad:
            raise TypeError(f"engine ids are ints, not {bad[0]!r}")
        if not chosen:
            raise InvalidEngineID("an empty list of engines selects no engine")
        unknown = [t for t in chosen if t not in ids]
        if unknown:
            raise InvalidEngineID(f"no engine {', '.join(map(str, unknown))}: the registered "
                                  f"engines are {ids}")
        if len(set(chosen)) != len(chosen):
            raise InvalidEngineID(f"an engine is named twice in {chosen}")
        return chosen
    raise TypeError(f"index a client with an engine id, a list of ids or a slice (a view of "
                    f"those engines), or a variable name (str), not {type(key).__name__}")


def _show_slice(key):
    parts = ["" if v is None else str(v) for v in (key.start, key.stop, key.step)]
    return "[" + ":".join(parts if key.step is not None else parts[:2]) + "]"


class View:
    """Some engines of a client: its methods with these ``targets``.

    Made by indexing the client (``mec[0]``, ``mec[[0, 2]]``, ``mec[1:3]``,
    ``mec[:]``).  :attr:`targets` is fixed; :attr:`block` starts as the
    client's and may be changed.  ``view['a']`` pulls ``a`` from the view's
    engines, ``view['a'] = v`` pushes it; ``len(view)`` is its number of
    engines.
    """

    def __init__(self, client, targets, block=None):
        self.client = client
        self._targets = targets
        self._block = client.block if block is None else _check_block(block)

    @property
    def targets(self):
        """The view's engines: an engine id or a list of ids (read-only)."""
        return self._targets

    @property
    def block(self):
        """The default of ``block`` of the view's methods."""
        return self._block

    @block.setter
    def block(self, value):
        self._block = _check_block(value)

    def __repr__(self):
        return f"<View targets={self._targets!r} of {self.client!r}>"

    def __len__(self):
        return 1 if isinstance(self._targets, int) else len(self._targets)

    def __bool__(self):
        return True

    def __getitem__(self, key):
        if not isinstance(key, str):
            raise TypeError(f"a view is indexed by variable names (str), not "
                            f"{type(key).__name__}; index the client for other engines")
        return self.pull(key)

    def __setitem__(self, key, value):
        if not isinstance(key, str):
            raise TypeError(f"engine variable names are str, not {type(key).__name__}")
        self.push({key: value})

    __iter__ = None  # __getitem__ takes names, not positions

    def activate(self):
        """Make this view the one the IPython magics use (``%px`` then runs on
        its engines)."""
        from ipkernel import magic
        magic.activate(self)

    def barrier(self, pending_results, **kwargs):
        """:meth:`MultiEngineClient.barrier` (pending results of any targets)."""
        return self.client.barrier(pending_results, **kwargs)

    def abort(self, pending_result_or_id, **kwargs):
        """:meth:`MultiEngineClient.abort`."""
        return self.client.abort(pending_result_or_id, **kwargs)


def _view_signature(signature):
    """The client method's signature without ``self`` and ``targets``; what
    followed ``targets`` becomes keyword-only (so no argument shifts place)."""
    params, after = [], False
    for name, param in signature.parameters.items():
        if name == "self":
            continue
        if name == "targets":
            after = True
            continue
        if after and param.kind is inspect.Parameter.POSITIONAL_OR_KEYWORD:
            param = param.replace(kind=inspect.Parameter.KEYWORD_ONLY)
        params.append(param)
    params.sort(key=lambda p: p.kind)  # (keyword-only ones may now precede **kwargs only)
    return signature.replace(parameters=params)


def _view_method(name, function):
    signature = inspect.signature(function)
    view_signature = _view_signature(signature)
    takes_block = "block" in signature.parameters

    def method(self, *args, **kwargs):
        if "targets" in kwargs:
            raise TypeError(f"View.{name}() takes no targets: this view is bound to "
                            f"{self._targets!r}; use another view for other engines "
                            f"(e.g. client[[0, 1]].{name}(...))")
        bound = view_signature.bind(*args, **kwargs)
        call_kwargs = dict(bound.kwargs, targets=self._targets)
        if takes_block and call_kwargs.get("block") is None:
            call_kwargs["block"] = self._block
        return getattr(self.client, name)(*bound.args, **call_kwargs)
    functools.update_wrapper(method, function, assigned=("__name__", "__doc__"), updated=())
    method.__qualname__ = f"View.{name}"
    method.__signature__ = view_signature.replace(
        parameters=[inspect.Parameter("self", inspect.Parameter.POSITIONAL_ONLY)]
        + list(view_signature.parameters.values()))
    return method


def _add_client_methods():
    """Give View every public client method that takes ``targets``."""
    for name in dir(MultiEngineClient):
        function = getattr(MultiEngineClient, name)
        if name.startswith("_") or not inspect.isfunction(function) or name in vars(View):
            continue
        if "targets" in inspect.signature(function).parameters:
            setattr(View, name, _view_method(name, function))


_add_client_methods()
