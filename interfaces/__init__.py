"""The contracts of ipkernel: zope Interfaces, no code.

Installed as ``ipkernel.interfaces`` (never as a top-level ``interfaces``).
"""
from .controller import IControllerBase, IControllerCore
from .engine import (IEngineBase, IEngineCore, IEngineProperties, IEngineQueued,
                     IEngineSerialized)
from .multiengine import (IEngineMultiplexer, IFullMultiEngine,
                          IFullSynchronousMultiEngine, IMultiEngine,
                          IMultiEngineCoordinator, IMultiEngineExtras,
                          ISynchronousEngineMultiplexer, ISynchronousMultiEngine,
                          ISynchronousMultiEngineCoordinator,
                          ISynchronousMultiEngineExtras)
from .serialized import ISerialized, IUnSerialized
from .task import IScheduler, ITask, ITaskController, IWorker

__all__ = [
    "IControllerBase", "IControllerCore",
    "IEngineBase", "IEngineCore", "IEngineProperties", "IEngineQueued", "IEngineSerialized",
    "IEngineMultiplexer", "IFullMultiEngine", "IFullSynchronousMultiEngine", "IMultiEngine",
    "IMultiEngineCoordinator", "IMultiEngineExtras", "ISynchronousEngineMultiplexer",
    "ISynchronousMultiEngine", "ISynchronousMultiEngineCoordinator",
    "ISynchronousMultiEngineExtras",
    "ISerialized", "IUnSerialized",
    "IScheduler", "ITask", "ITaskController", "IWorker",
]
