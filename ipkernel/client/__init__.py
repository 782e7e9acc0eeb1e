"""The client role: ways for users and programs to talk to a controller.

* :mod:`ipkernel.client.fcmultiengine`: the Deferred-based multi-engine
  client over Foolscap (see :mod:`ipkernel.asyncclient` to connect).
"""
