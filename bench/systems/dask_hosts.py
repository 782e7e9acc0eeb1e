"""dask between two "hosts" (see :mod:`bench.hosts`): ``dask scheduler`` in
the controller's namespace and one ``dask worker --nworkers n --nthreads 1``
(with nannies, as LocalCluster has) in the engines' namespace, started with
``ip netns exec``; with TLS certificates, ``tls://`` everywhere.  Also used
on one host for a TLS scheduler alone in its process (the memory workload).
"""
import sys
import time

from bench import nsproc

#: Seconds a cluster may take to start (at least; a second per engine beyond
#: that, for many new processes on few cores).
START_TIMEOUT = 120


def security(paths):
    """A ``distributed.Security`` requiring TLS, with one certificate for all."""
    import distributed

    cert, key = str(paths["cert"]), str(paths["key"])
    return distributed.Security(tls_ca_file=str(paths["ca"]), tls_client_cert=cert,
                                tls_client_key=key, tls_scheduler_cert=cert,
                                tls_scheduler_key=key, tls_worker_cert=cert,
                                tls_worker_key=key, require_encryption=True)


def _tls_args(paths):
    return ["--tls-ca-file", paths["ca"], "--tls-cert", paths["cert"], "--tls-key", paths["key"]]


def start_processes(n, placement, workdir, tls_paths=None):
    """``dask scheduler`` in ``placement.server_ns`` and ``dask worker`` (n
    single-threaded processes) in ``placement.engine_ns`` (here for a local
    placement), and a Client; return ``(client, stop, scheduler pid)``."""
    import distributed

    deadline = time.monotonic() + max(START_TIMEOUT, n)
    file = workdir / "scheduler.json"
    tls = _tls_args(tls_paths) if tls_paths else []
    protocol = ["--protocol", "tls"] if tls_paths else []
    scheduler_host = placement.server_addr or "127.0.0.1"
    worker_host = placement.engine_addr or "127.0.0.1"
    started = []
    client = None

    def stop():
        try:
            if client is not None:
                client.close()
        finally:
            nsproc.stop_all(started)
    try:
        scheduler = nsproc.NsProcess(
            "dask scheduler", [sys.executable, "-m", "distributed.cli.dask_scheduler",
                               "--host", scheduler_host, "--port", "0", "--no-dashboard",
                               "--scheduler-file", file, *protocol, *tls],
            placement.server_ns, workdir / "scheduler.log").start()
        started.append(scheduler)
        scheduler.wait_for(file.exists, "its scheduler file", deadline)
        started.append(nsproc.NsProcess(
            "dask worker", [sys.executable, "-m", "distributed.cli.dask_worker",
                            "--scheduler-file", file, "--nworkers", n, "--nthreads", 1,
                            "--host", worker_host, "--no-dashboard", *protocol, *tls],
            placement.engine_ns, workdir / "workers.log").start())
        client = distributed.Client(scheduler_file=str(file), timeout=START_TIMEOUT,
                                    security=security(tls_paths) if tls_paths else None)
        client.wait_for_workers(n, timeout=max(1, deadline - time.monotonic()))
    except BaseException:
        stop()
        raise
    return client, stop, scheduler.pid
