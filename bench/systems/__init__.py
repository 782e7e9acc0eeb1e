"""One module per compared system, each a :class:`~bench.systems.base.System`.

:func:`available` returns the systems whose libraries import, and the
names of the missing ones.
"""
import importlib

#: (display name, module of this package, class name, what must import), in
#: the order of the table's columns (each encrypted peer beside its default)
SYSTEMS = [
    ("ipkernel", "bench.systems.ipkernel", "IpkernelSystem", "ipkernel"),
    ("ipkernel-watched", "bench.systems.ipkernel", "IpkernelWatchedSystem", "ipkernel"),
    ("ipyparallel", "bench.systems.ipyparallel", "IpyparallelSystem", "ipyparallel"),
    ("ipyparallel-curve", "bench.systems.ipyparallel", "IpyparallelCurveSystem", "ipyparallel"),
    ("dask", "bench.systems.dask", "DaskSystem", "distributed"),
    ("dask-tls", "bench.systems.dask", "DaskTlsSystem", "distributed"),
]

#: The systems compared by default, each in its default configuration.
DEFAULT_SYSTEMS = ("ipkernel", "ipyparallel", "dask")
#: ipkernel in another configuration: compared with ipkernel, never a peer.
VARIANTS = ("ipkernel-watched",)
#: The peers with encryption on (CurveZMQ, TLS), compared by default between hosts.
ENCRYPTED_PEERS = ("ipyparallel-curve", "dask-tls")


def available(wanted=None):
    """``(classes, missing)``: the System classes that can run here (in
    :data:`SYSTEMS` order, restricted to ``wanted`` names if given) and the
    names of those whose library is not installed."""
    known = [name for name, *_ in SYSTEMS]
    unknown = [name for name in wanted or () if name not in known]
    if unknown:
        raise ValueError(f"unknown system(s) {', '.join(unknown)}: choose from {', '.join(known)}")
    classes, missing = [], []
    for name, module, cls, requirement in SYSTEMS:
        if wanted is not None and name not in wanted:
            continue
        try:
            importlib.import_module(requirement)
            importlib.import_module("numpy")  # the data workloads need it
        except ImportError:
            missing.append(name)
            continue
        classes.append(getattr(importlib.import_module(module), cls))
    return classes, missing
