"""Tier 3: the bench's encrypted peer configurations really encrypt.

``dask-tls`` listens on ``tls://`` only (a client without the certificates
gets no connection) and ``ipyparallel-curve`` hands its clients the
controller's CurveZMQ key; both still compute.  Run on loopback in a
subprocess (the peers' clients block), with one worker or engine each.
Needs the bench extras (``pip install -e '.[bench]'``).
"""
import json
import subprocess
import sys
import textwrap

import importlib.util

import pytest
from benchload import ROOT
from tier4 import require

pytestmark = [pytest.mark.tier3, pytest.mark.timeout(300)]

SCRIPT = textwrap.dedent("""
    import json, sys
    sys.path.insert(0, sys.argv[1])
    out = {}
    from bench.systems.dask import DaskTlsSystem
    import distributed
    dask = DaskTlsSystem()
    dask.start(1)
    try:
        address = dask.client.scheduler.address
        out["dask_address"] = address
        out["dask_answer"] = dask.client.submit(lambda: 6 * 7, pure=False).result(60)
        try:
            plain = distributed.Client(address.replace("tls://", "tcp://"), timeout=5)
            plain.close()
            out["plain_client"] = "connected"
        except Exception as exc:
            out["plain_client"] = type(exc).__name__
    finally:
        dask.stop()
    from bench.systems.ipyparallel import IpyparallelCurveSystem
    ipp = IpyparallelCurveSystem()
    ipp.start(1)
    try:
        out["curve_key"] = bool(ipp.rc.curve_serverkey)
        out["ipp_answer"] = ipp.rc[0].apply_sync(lambda: 6 * 7)
    finally:
        ipp.stop()
    print("RESULT " + json.dumps(out), flush=True)
""")


def _importable(name):
    return importlib.util.find_spec(name) is not None


def test_dask_tls_and_ipyparallel_curve_encrypt_and_compute():
    missing = [name for name in ("distributed", "ipyparallel") if not _importable(name)]
    require(missing and f"the bench's peers ({', '.join(missing)}) are not installed "
            f"(pip install -e '.[bench]')", "scripts/ci/bench-peers.sh")
    done = subprocess.run([sys.executable, "-c", SCRIPT, str(ROOT)], capture_output=True,
                          text=True, timeout=240, cwd=ROOT, stdin=subprocess.DEVNULL)
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-4000:]
    line = next(li for li in done.stdout.splitlines() if li.startswith("RESULT "))
    got = json.loads(line[len("RESULT "):])
    assert got["dask_address"].startswith("tls://127.0.0.1:"), got
    assert got["dask_answer"] == 42 and got["ipp_answer"] == 42
    assert got["plain_client"] != "connected", got
    assert got["curve_key"] is True
