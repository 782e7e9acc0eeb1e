"""Starting clusters: launchers, :class:`LocalCluster` and the ``ipcluster`` program.

* :mod:`ipkernel.cluster.launcher`: one controller or engine process,
  controlled like a kernel manager (start, shutdown, restart, interrupt).
* :mod:`ipkernel.cluster.local`: :class:`LocalCluster`, a controller and
  n engines on this machine for a ``with`` block, a notebook or a test.
* :mod:`ipkernel.cluster.restarts`: engines that crash are started again,
  with a back-off.
* :mod:`ipkernel.cluster.app`: the ``ipcluster`` command.
"""
from ipkernel.cluster.launcher import LaunchError
from ipkernel.cluster.local import LocalCluster

__all__ = ["LocalCluster", "LaunchError"]
