"""Tier 3: no FURL secret in the messages of clients and engines that are
given a wrong FURL (issue 13: connection errors printed the FURL in full).

Real processes: a client program given a stale FURL, the file holding it,
a FURL of an object the controller does not have, and a malformed FURL; an
ipengine given a stale FURL file.  Their whole output (tracebacks included)
and the engine's logs must name the controller by its redacted FURL and
never show the swissnum.
"""
import subprocess
import sys
from pathlib import Path

import pytest

from ipkernel.cluster import LocalCluster
from ipkernel.fcutil import redacted_furl

pytestmark = [pytest.mark.tier3, pytest.mark.timeout(120)]

SECRET = "em6n6kvvcu6ilpjboulqnoln2daxszga"
#: A FURL of a controller that is not running (port 1 on loopback refuses).
STALE = f"pb://o33gyjsq2t43pdktaab7s2sqix2txtnv@tcp:127.0.0.1:1/{SECRET}"
CLIENT = """
import sys
from ipkernel.client import MultiEngineClient
try:
    MultiEngineClient(sys.argv[1], connect_timeout=5)
except Exception as exc:
    print(f"{type(exc).__name__}: {exc}")
    raise
"""


def run_client(furl_or_file):
    done = subprocess.run([sys.executable, "-c", CLIENT, str(furl_or_file)], capture_output=True,
                          text=True, timeout=60, stdin=subprocess.DEVNULL)
    assert done.returncode != 0, done.stdout
    return done.stdout + done.stderr


def test_a_client_with_a_wrong_furl_shows_no_secret(tmp_path):
    output = run_client(STALE)
    assert "ControllerError" in output and redacted_furl(STALE) in output
    assert SECRET not in output

    furl_file = tmp_path / "ipcontroller-mec.furl"
    furl_file.write_text(STALE + "\n")
    output = run_client(furl_file)
    assert "ControllerError" in output and str(furl_file) in output
    assert SECRET not in output

    output = run_client(f"pb://{SECRET}")   # too broken to find its secret part
    assert "is not a valid FURL" in output and SECRET not in output


def test_a_client_with_a_wrong_name_at_a_live_controller_shows_no_secret(reaper, tmp_path):
    with LocalCluster(n=0, cluster_dir=reaper.add_cluster_dir(tmp_path / "c"),
                      timeout=60, engine_furl_file=True) as cluster:
        furl = Path(cluster.mec_furl_file).read_text().strip()
        wrong = furl.rsplit("/", 1)[0] + "/" + SECRET
        output = run_client(wrong)
        assert "no object under that FURL's name" in output
        assert redacted_furl(wrong) in output and SECRET not in output
        engine_furl = Path(cluster.mec_furl_file).with_name("ipcontroller-engine.furl")
        engine_secret = engine_furl.read_text().strip().rsplit("/", 1)[1]
        output = run_client(engine_furl.read_text().strip())   # the engine FURL: wrong kind
        assert "ControllerError" in output and engine_secret not in output


def test_an_engine_with_a_stale_furl_logs_no_secret(tmp_path):
    ipengine = Path(sys.executable).with_name("ipengine")
    cluster_dir = tmp_path / "cluster"
    furl_file = tmp_path / "ipcontroller-engine.furl"
    furl_file.write_text(STALE + "\n")
    done = subprocess.run([str(ipengine), "--cluster-dir", str(cluster_dir), "--furl-file",
                           str(furl_file), "--register-timeout", "3"], capture_output=True,
                          text=True, timeout=60, stdin=subprocess.DEVNULL)
    assert done.returncode != 0
    texts = [done.stdout + done.stderr] + [p.read_text() for p in (cluster_dir / "log").glob("*")
                                           if p.is_file()]
    assert any("could not register" in t for t in texts), texts
    assert not any(SECRET in t for t in texts)
