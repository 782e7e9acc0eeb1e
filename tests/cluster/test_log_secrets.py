"""Tier 3: no secret of a cluster reaches its logs or the reprs (issue 12).

A whole session (secrets_session.py, in a fresh Python process) starts a
LocalCluster in a kept cluster directory and uses it the way users do;
afterwards every log file of the cluster, the session's own output and
the repr and str of every client, pending result, launcher and cluster
object are searched for the swissnums of the cluster's FURL files, for
the lane and data-channel tokens (of the client and of the engines), and
for any FURL shown with its name part.
"""
import json
from pathlib import Path

import pytest

import logsecrets
from ipkernel.fcutil import redacted_furl

pytestmark = [pytest.mark.tier3, pytest.mark.timeout(240)]

SESSION = Path(__file__).with_name("secrets_session.py")


def test_a_whole_cluster_session_shows_no_secret(reaper, tmp_path):
    cluster_dir = reaper.add_cluster_dir(tmp_path / "cluster")
    out = tmp_path / "shown.json"
    output = reaper.run_session(SESSION, cluster_dir, out, ok="SECRETS SESSION OK", timeout=180)
    shown = json.loads(out.read_text())

    furl_secrets = logsecrets.furl_secrets(cluster_dir)
    assert len(furl_secrets) == 3   # engine, multi-engine and task FURLs
    # two engines and two clients, each with a lane and a data-channel token
    # (the task client has a lane but no data channel)
    assert len(shown["tokens"]) >= 4
    secrets = {**furl_secrets, **logsecrets.token_secrets(shown["tokens"])}
    texts = logsecrets.cluster_texts(cluster_dir)
    assert {Path(p).name for p in texts} >= {"ipcontroller.log", "ipengine-0.log",
                                             "ipengine-1.log", "ipengine-zygote.log"}
    texts["the session's output"] = output
    texts.update({f"shown[{k}]": text for k, text in enumerate(shown["texts"])})
    logsecrets.assert_no_leaks(texts, secrets)

    # the reprs do show which controller: the redacted FURL
    mec_furl = (cluster_dir / "security" / "ipcontroller-mec.furl").read_text().strip()
    assert any(redacted_furl(mec_furl) in text for text in shown["texts"])


def test_the_scan_finds_what_it_looks_for(tmp_path):
    # the check above is not vacuous: a leaked swissnum, token or FURL is found
    (tmp_path / "security").mkdir()
    (tmp_path / "log").mkdir()
    furl = "pb://o33gyjsq2t43pdktaab7s2sqix2txtnv@tcp:127.0.0.1:1/em6n6kvvcu6ilpjboulqnoln2daxszga"
    (tmp_path / "security" / "ipcontroller-mec.furl").write_text(furl + "\n")
    token = bytes(range(32))
    (tmp_path / "log" / "a.log").write_text(f"name em6n6kvvcu6ilpjboulqnoln2daxszga\n")
    (tmp_path / "log" / "b.log").write_text(f"token {token!r}\n")
    (tmp_path / "log" / "c.log").write_text("pb://abc@tcp:h:1/zzzzzzzzzzzz\n")
    (tmp_path / "log" / "d.log").write_text(f"fine: {redacted_furl(furl)}\n")
    with pytest.raises(AssertionError) as info:
        logsecrets.check_cluster_dir(tmp_path, tokens=[token])
    message = str(info.value)
    assert "ipcontroller-mec.furl in " + str(tmp_path / "log" / "a.log") in message
    assert "token in " + str(tmp_path / "log" / "b.log") in message
    assert "unredacted FURL" in message and "c.log" in message
    assert "d.log" not in message
    assert "em6n6kvv" not in message   # the failure does not repeat the secret
