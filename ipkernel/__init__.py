"""ipkernel: a controller, many engines and clients for interactive parallel Python.

Importing the package registers the Twisted adapters between the roles, so
``IMultiEngine(ControllerService())``, ``IEngineQueued(EngineService())``,
``RIMultiEngine(ISynchronousMultiEngine(...))`` (the Foolscap wrapper) and,
on the client side, ``IFullSynchronousMultiEngine(remote_reference)`` work.
"""
__version__ = "0.1.0.dev0"

from ipkernel import engine as _engine  # noqa: F401  (registers adapters)
from ipkernel import controller as _controller  # noqa: F401  (registers adapters)
from ipkernel import task as _task  # noqa: F401  (registers the task adapter)
from ipkernel.engine import fc as _engine_fc  # noqa: F401  (network adapters)
from ipkernel.controller import fc as _controller_fc  # noqa: F401
from ipkernel.client import fcmultiengine as _client_fc  # noqa: F401
from ipkernel.task import fc as _task_fc  # noqa: F401  (ITaskController -> RITaskController)
