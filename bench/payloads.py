"""The tiny functions the workloads ship to engines and workers.

They are compiled in a namespace named ``__main__`` on purpose: the engines
and workers of all three systems cannot import the ``bench`` package (their
working directory and ``sys.path`` differ), so the functions must travel by
value.  cloudpickle (ipkernel, dask) sends ``__main__`` functions by value,
and ipyparallel's function canning rebuilds a ``__main__`` function in the
engine's namespace instead of importing its module.
"""

_SOURCE = '''
def noop(*args):
    """Do nothing: the cost measured is the system's, not the function's."""
    return None


def square(x):
    """The direct-map body: x ** 2."""
    return x ** 2


def square_all(xs):
    """x ** 2 of every item of a block (dask's stand-in for a direct map)."""
    return [x ** 2 for x in xs]

'''

_namespace = {"__name__": "__main__"}
exec(compile(_SOURCE, "<bench.payloads>", "exec"), _namespace)

noop = _namespace["noop"]
square = _namespace["square"]
square_all = _namespace["square_all"]
