"""ipkernel: a controller, many engines and clients for interactive parallel Python.

Importing the package registers the Twisted adapters between the roles, so
``IMultiEngine(ControllerService())``, ``IEngineQueued(EngineService())``,
``RIMultiEngine(ISynchronousMultiEngine(...))`` (the Foolscap wrapper) and,
on the client side, ``IFullSynchronousMultiEngine(remote_reference)`` work.
The client modules themselves are imported when that last adapter is first
used (or a client is made): controllers and engines do not need them.

:class:`~ipkernel.error.TaskRejectError` is importable from here, as it was
from ``IPython.kernel``: a task raises it to say "not on this engine".
"""
__version__ = "0.1.0.dev0"

import gc as _gc

# The imports below make a few hundred thousand objects and hardly any
# garbage: the collections they would set off are wasted time (a tenth of
# the import), so the collector waits until they are done.
_collecting = _gc.isenabled()
_gc.disable()
try:
    from foolscap.referenceable import RemoteReference as _RemoteReference
    from twisted.python import components as _components

    from ipkernel import engine as _engine  # noqa: F401  (registers adapters)
    from ipkernel import controller as _controller  # noqa: F401  (registers adapters)
    from ipkernel import task as _task  # noqa: F401  (registers the task adapter)
    from ipkernel.engine import fc as _engine_fc  # noqa: F401  (network adapters)
    from ipkernel.controller import fc as _controller_fc  # noqa: F401
    from ipkernel.interfaces.multiengine import IFullSynchronousMultiEngine as _IFullSME
    from ipkernel.task import fc as _task_fc  # noqa: F401  (ITaskController -> RITaskController)
    from ipkernel.error import TaskRejectError  # noqa: F401  (IPython.kernel.TaskRejectError)
finally:
    if _collecting:
        _gc.enable()


def _client_multiengine(remote_reference):
    # RemoteReference -> IFullSynchronousMultiEngine, the client module imported on first use
    from ipkernel.client.fcmultiengine import FCFullSynchronousMultiEngineClient
    return FCFullSynchronousMultiEngineClient(remote_reference)


if _components.getAdapterFactory(_RemoteReference, _IFullSME, None) is None:
    _components.registerAdapter(_client_multiengine, _RemoteReference, _IFullSME)


def load_ipython_extension(ipython):
    """``%load_ext ipkernel``: the parallel magics (%px, %%px, %autopx, %result;
    see :mod:`ipkernel.magic`)."""
    from ipkernel import magic
    magic.load_ipython_extension(ipython)


def unload_ipython_extension(ipython):
    """``%unload_ext ipkernel``."""
    from ipkernel import magic
    magic.unload_ipython_extension(ipython)
