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
"""
from ipkernel.client.blocking import (CLIENT_DEFAULT, MultiEngineClient, MultiEngineMapper,
                                      ParallelFunction, PendingResult, ResultList)
from ipkernel.client.blocking_task import TaskClient
from ipkernel.client.reactor import CallTimeout, ReactorNotRunning, ReactorThreadError
from ipkernel.error import CompositeError

__all__ = ["MultiEngineClient", "TaskClient", "PendingResult", "ResultList", "MultiEngineMapper",
           "ParallelFunction", "CompositeError", "CallTimeout", "ReactorThreadError",
           "ReactorNotRunning", "CLIENT_DEFAULT"]
