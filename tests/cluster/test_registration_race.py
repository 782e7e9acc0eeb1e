"""Tier 3: engines get large data the moment they show in get_ids (issue 13:
8 of 10 large pushes made right after an engine appeared failed or hung,
because it was counted before it had joined its data channel).

The session (registration_race_session.py) starts engines into a running
cluster (its data channel on TLS, which makes joining it take a while: on
the code before the fix 3 of 10 calls then hung for 30 s) and pushes BIG bytes to each as soon as get_ids shows it, and to
'all' after every new batch; every push and every check must succeed, and
none may wait for a blob that never comes.
"""
import json
from pathlib import Path

import pytest

pytestmark = [pytest.mark.tier3, pytest.mark.timeout(180)]

SESSION = Path(__file__).with_name("registration_race_session.py")


def test_engines_take_large_pushes_as_soon_as_they_are_listed(reaper, tmp_path):
    cluster_dir = reaper.add_cluster_dir(tmp_path / "cluster")
    out = tmp_path / "outcomes.json"
    reaper.run_session(SESSION, cluster_dir, out, ok="REGISTRATION RACE SESSION OK", timeout=150)
    report = json.loads(out.read_text())
    assert len(report["seen"]) == 9, report          # the first engine and eight new ones
    outcomes = report["outcomes"]
    failed = [o for o in outcomes if not o["ok"]]
    assert not failed, failed
    pushes = [o for o in outcomes if o["what"].startswith("push to ") and o["what"] != "push to all"]
    assert len(pushes) == 8
    assert all(o["value"] is True for o in outcomes if o["what"].startswith("check on"))
    assert outcomes[-1]["value"] == [4_000_000] * 9
    # no push waited for bulk data that did not come (the 120 s blob wait)
    assert max(o["seconds"] for o in outcomes) < 20, outcomes
