"""ipkernel: a controller, many engines and clients for interactive parallel Python.

Importing the package registers the Twisted adapters between the roles, so
``IMultiEngine(ControllerService())`` and ``IEngineQueued(EngineService())``
work.
"""
__version__ = "0.1.0.dev0"

from ipkernel import engine as _engine  # noqa: F401  (registers adapters)
from ipkernel import controller as _controller  # noqa: F401  (registers adapters)
