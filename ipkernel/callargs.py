"""The positional and keyword arguments of a function sent to an engine.

``apply(func, args, kwargs)`` and ``MapTask(func, args, kwargs)`` take them as
a tuple and a dict (as IPython 0.10 did), where ipyparallel's ``apply`` takes
``*args, **kwargs``: :func:`checked` turns a mistake into an error that says
how to write the call.
"""

__all__ = ["checked"]


def checked(args, kwargs, what="apply"):
    """``(tuple(args), dict(kwargs))``; None stands for none.  TypeError
    when ``args`` is not a tuple or list or ``kwargs`` not a dict, saying how
    to write ``what``'s call instead."""
    if args is None:
        args = ()
    elif not isinstance(args, (list, tuple)):
        raise TypeError(
            f"{what}: args must be a tuple (or list) of the positional arguments, not "
            f"{type(args).__name__}; for one argument x write {what}(func, (x,)), for keyword "
            f"arguments {what}(func, (), {{'name': value}})")
    if kwargs is None:
        kwargs = {}
    elif not isinstance(kwargs, dict):
        raise TypeError(f"{what}: kwargs must be a dict of the keyword arguments, not "
                        f"{type(kwargs).__name__}; write {what}(func, args, {{'name': value}})")
    return tuple(args), dict(kwargs)
