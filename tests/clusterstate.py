"""What a running cluster directory shows from outside: the live processes
its pid files name and the engines its controller has registered.

Importable from any test module (``tests/`` is on ``pythonpath``).
"""
from foolscap.eventual import flushEventualQueue

from ipkernel import asyncclient, fcutil
from ipkernel.cluster import pidfiles


def live_pids(cluster_dir):
    """{program name: pid} of the live processes in ``cluster_dir``'s pid files."""
    return {r.name: r.pid for r in pidfiles.scan(cluster_dir / "pid") if r.alive}


async def registered_ids(cluster_dir):
    """The engine ids the controller of ``cluster_dir`` has registered (a fresh client)."""
    tub = fcutil.make_tub()
    tub.startService()
    try:
        mec = await asyncclient.get_multiengine_client(
            str(cluster_dir / "security" / "ipcontroller-mec.furl"), tub=tub)
        return await mec.get_ids()
    finally:
        await tub.stopService()
        await flushEventualQueue()

