"""Tier 3: --payload-cap bounds Foolscap and lanes too (issue 13), on a real
controller without a data channel.

A 300 MB push (too big for a lane, so it goes through Foolscap) is refused
on its token header: PayloadTooLarge, and the controller's memory does not
grow by it.  A 1.5 MB push (on the lane) is refused by the cap check, a
value under the cap still works, and a pull of a value over the cap fails
with PayloadTooLarge while the engines stay registered.
"""
import json
from pathlib import Path

import pytest

pytestmark = [pytest.mark.tier3, pytest.mark.timeout(180)]

SESSION = Path(__file__).with_name("payload_cap_session.py")
MiB = 1 << 20


def test_the_payload_cap_refuses_values_on_foolscap_and_lanes(reaper, tmp_path):
    out = tmp_path / "report.json"
    reaper.run_session(SESSION, str(out), ok="PAYLOAD CAP SESSION OK", timeout=150)
    report = json.loads(out.read_text())

    huge = report["huge"]
    assert huge["error"] == "PayloadTooLarge", huge
    assert "refused by the controller as too large" in huge["message"]
    assert "payload cap of 1000000 bytes" in huge["message"]   # refused on the header, unread
    assert report["rss_after_huge"] - report["rss_before"] < 64 * MiB, report
    over = report["over"]
    assert over["error"] == "PayloadTooLarge" and "payload cap of 1000000" in over["message"]
    assert report["under"] == {"ok": True, "value": [None, None]}
    assert report["pulled"] == {"ok": True, "value": [500_000, 500_000]}
    # an engine's answer over the cap fails the pull and costs the engines nothing
    big_pull = report["big_pull"]
    assert big_pull["error"] == "CompositeError", big_pull
    assert big_pull["message"].count("PayloadTooLarge: the answer is too large") == 2
    assert report["ids_after"] == [0, 1]
    assert report["small_after"] == {"ok": True, "value": True}
