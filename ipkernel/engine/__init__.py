"""The engine role: a persistent Python namespace that runs user code.

:class:`EngineService` implements
:class:`~ipkernel.interfaces.engine.IEngineBase`; :class:`QueuedEngine` adapts it
to :class:`~ipkernel.interfaces.engine.IEngineQueued` (registered with Twisted's adapter
registry on import).
"""
from twisted.python import components

from ipkernel.engine.interpreter import Interpreter
from ipkernel.engine.properties import EngineAPI, StrictDict, drop_engine, get_engine
from ipkernel.engine.queued import Command, QueuedEngine, current_request
from ipkernel.engine.service import EngineService
from ipkernel.interfaces.engine import IEngineBase, IEngineQueued

if components.getAdapterFactory(IEngineBase, IEngineQueued, None) is None:
    components.registerAdapter(QueuedEngine, IEngineBase, IEngineQueued)

__all__ = ["Command", "EngineAPI", "EngineService", "Interpreter", "QueuedEngine", "StrictDict",
           "current_request", "drop_engine", "get_engine"]
