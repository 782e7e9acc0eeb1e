"""The controller role: the engine registry and its client-facing views.

Importing this package registers the adapters:

* ``IControllerBase -> IMultiEngine / IFullMultiEngine``: :class:`MultiEngine`
* ``IMultiEngine -> ISynchronousMultiEngine`` and
  ``IFullMultiEngine -> IFullSynchronousMultiEngine``: :class:`SynchronousMultiEngine`
"""
from twisted.python import components

from ipkernel.controller.multiengine import MultiEngine
from ipkernel.controller.pending import PendingDeferredManager, two_phase
from ipkernel.controller.service import ControllerAdapterBase, ControllerService
from ipkernel.controller.synchronous import SynchronousMultiEngine
from ipkernel.interfaces.controller import IControllerBase
from ipkernel.interfaces.multiengine import (IFullMultiEngine, IFullSynchronousMultiEngine,
                                             IMultiEngine, ISynchronousMultiEngine)


def _register(factory, source, *targets):
    for target in targets:
        if components.getAdapterFactory(source, target, None) is None:
            components.registerAdapter(factory, source, target)


_register(MultiEngine, IControllerBase, IMultiEngine, IFullMultiEngine)
_register(SynchronousMultiEngine, IMultiEngine, ISynchronousMultiEngine)
_register(SynchronousMultiEngine, IFullMultiEngine, IFullSynchronousMultiEngine)

__all__ = ["ControllerAdapterBase", "ControllerService", "MultiEngine", "PendingDeferredManager",
           "SynchronousMultiEngine", "two_phase"]
