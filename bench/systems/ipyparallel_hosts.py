"""ipyparallel between two "hosts" (see :mod:`bench.hosts`):
``ipcontroller --ip=ADDRESS`` in the controller's namespace and ``n``
``ipengine`` processes in the engines' namespace, started with ``ip netns
exec`` and sharing a temporary profile folder; the client reads the
controller's connection file.
"""
import shutil
import sys
import tempfile
import time
from pathlib import Path

from bench import nsproc

#: Seconds a cluster may take to start (at least; a second per engine beyond
#: that, for many new processes on few cores).
START_TIMEOUT = 120


def _program(module):
    """The argv of an ipyparallel program, by module: in one environment with
    ipkernel, the ``ipcontroller`` and ``ipengine`` scripts are ipkernel's."""
    return [sys.executable, "-m", module]


def start_processes(n, placement, controller_args=()):
    """``ipcontroller`` in ``placement.server_ns``, ``n`` ``ipengine`` in
    ``placement.engine_ns`` and a Client; ``(controller pid, client, stop)``."""
    import ipyparallel

    deadline = time.monotonic() + max(START_TIMEOUT, n)
    workdir = Path(tempfile.mkdtemp(prefix="bench-ipyparallel-hosts-"))
    profile = workdir / "profile"
    client_file = profile / "security" / "ipcontroller-client.json"
    engine_file = profile / "security" / "ipcontroller-engine.json"
    started = []
    client = None

    def stop():
        try:
            if client is not None:
                client.close()
        finally:
            try:
                nsproc.stop_all(started)
            finally:
                shutil.rmtree(workdir, ignore_errors=True)
    try:
        controller = nsproc.NsProcess(
            "ipcontroller", [*_program("ipyparallel.controller"), f"--profile-dir={profile}",
                             f"--ip={placement.server_addr}", "--log-level=WARN",
                             *controller_args],
            placement.server_ns, workdir / "ipcontroller.log").start()
        started.append(controller)
        controller.wait_for(lambda: client_file.exists() and engine_file.exists(),
                            "its connection files", deadline)
        for index in range(n):
            started.append(nsproc.NsProcess(
                f"ipengine {index}", [*_program("ipyparallel.engine"), f"--profile-dir={profile}",
                                      "--log-level=WARN"],
                placement.engine_ns, workdir / f"ipengine-{index}.log").start())
        client = ipyparallel.Client(str(client_file),
                                    timeout=max(1, deadline - time.monotonic()))
        client.wait_for_engines(n, timeout=max(1, deadline - time.monotonic()))
    except BaseException:
        stop()
        raise
    return controller.pid, client, stop
