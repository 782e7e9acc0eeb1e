"""Python signatures of zope interface methods, for methods made from them."""
import inspect


def interface_signature(spec, self_name="self"):
    """The :class:`inspect.Signature` of interface method ``spec`` (an
    ``IFoo['name']``), with ``self`` first: its positional parameters, their
    defaults, ``*args`` and ``**kwargs`` (zope.interface does not record
    keyword-only parameters)."""
    info = spec.getSignatureInfo()
    kind = inspect.Parameter.POSITIONAL_OR_KEYWORD
    params = [inspect.Parameter(self_name, kind)]
    for name in info["positional"]:
        default = info["optional"].get(name, inspect.Parameter.empty)
        params.append(inspect.Parameter(name, kind, default=default))
    if info["varargs"]:
        params.append(inspect.Parameter(info["varargs"], inspect.Parameter.VAR_POSITIONAL))
    if info["kwargs"]:
        params.append(inspect.Parameter(info["kwargs"], inspect.Parameter.VAR_KEYWORD))
    return inspect.Signature(params)
