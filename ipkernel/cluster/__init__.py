"""Starting clusters: launchers, :class:`LocalCluster` and the ``ipcluster`` program.

* :mod:`ipkernel.cluster.launcher`: one controller or engine process,
  controlled like a kernel manager (start, shutdown, restart, interrupt).
* :mod:`ipkernel.cluster.local`: :class:`LocalCluster`, a controller and
  n engines on this machine for a ``with`` block, a notebook or a test.
* :mod:`ipkernel.cluster.restarts`: engines that crash are started again,
  with a back-off.
* :mod:`ipkernel.cluster.cluster`: :class:`Cluster`, a controller and engines
  started by any launcher mode (local, mpiexec, ssh, Slurm, PBS, SGE, LSF);
  :mod:`ipkernel.cluster.engineset` is the contract of those launchers.
* :mod:`ipkernel.cluster.app`: the ``ipcluster`` command.
"""
from ipkernel.cluster.launcher import LaunchError
from ipkernel.cluster.local import LocalCluster
from ipkernel.cluster.cluster import Cluster

__all__ = ["Cluster", "LocalCluster", "LaunchError"]
