"""The client role: ways for users and programs to talk to a controller.

* :class:`MultiEngineClient` (from :mod:`ipkernel.client.blocking`): the
  blocking client for interactive use and scripts::

      from ipkernel import client
      mec = client.MultiEngineClient()   # or MultiEngineClient("path/to/ipcontroller-mec.furl")
      mec.get_ids()

  It runs the Twisted reactor in a background thread, started on first use
  (see :mod:`ipkernel.client.reactor`).
* :mod:`ipkernel.client.fcmultiengine`: the Deferred-based multi-engine
  client over Foolscap, for Twisted programs (see :mod:`ipkernel.asyncclient`
  to connect).

IPython 0.10's names are here as well: ``get_multiengine_client(furl_or_file='')``
and ``get_task_client(furl_or_file='')`` (connected clients; ``''`` means
the default FURL file), the tasks ``MapTask`` and ``StringTask``, and the
errors ``TaskRejectError`` and ``CompositeError``::

    from ipkernel import client
    tc = client.get_task_client()
    tc.run(client.StringTask("y = 6 * 7", pull="y"), block=True).ns.y   # 42
"""
from ipkernel.client.blocking import (CLIENT_DEFAULT, MultiEngineClient, MultiEngineMapper,
                                      ParallelFunction, PendingResult, ResultList,
                                      get_multiengine_client)
from ipkernel.client.blocking_task import TaskClient, get_task_client
from ipkernel.client.reactor import CallTimeout, ReactorNotRunning, ReactorThreadError
from ipkernel.client.view import View
from ipkernel.error import CompositeError, TaskRejectError
from ipkernel.task.tasks import MapTask, StringTask

__all__ = ["MultiEngineClient", "TaskClient", "get_multiengine_client", "get_task_client",
           "MapTask", "StringTask", "PendingResult", "ResultList", "MultiEngineMapper",
           "ParallelFunction", "CompositeError", "TaskRejectError", "CallTimeout",
           "ReactorThreadError", "ReactorNotRunning", "CLIENT_DEFAULT", "View"]
