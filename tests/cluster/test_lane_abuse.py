"""Tier 3: a lane CALL header announcing 16 GiB is refused on its header by a
real controller (issue 13: the controller grew 88 -> 2,114 MB and kept it).

The session (lane_abuse_session.py, in a fresh Python process) joins the
controller's lane with a real token and pours zeros after the header.  The
controller must answer the call with a FAIL naming the limit and close the
lane after a few MiB at most, its memory must not grow by the bytes sent,
and it must still serve real clients (also a call too big for a lane, which
goes through Foolscap).
"""
import json
from pathlib import Path

import pytest

pytestmark = [pytest.mark.tier3, pytest.mark.timeout(180)]

SESSION = Path(__file__).with_name("lane_abuse_session.py")
MiB = 1 << 20


def test_a_huge_lane_frame_is_refused_on_its_header(reaper, tmp_path):
    out = tmp_path / "report.json"
    reaper.run_session(SESSION, str(out), ok="LANE ABUSE SESSION OK", timeout=150)
    report = json.loads(out.read_text())

    kind, call_id, text = report["answered"]
    assert (kind, call_id) == (5, 9), report          # a FAIL for the hostile call
    assert "too large for this lane" in text and str(64 * MiB) in text
    # the lane was closed long before the 2 GiB were sent (socket buffers only)
    assert report["sent"] < 256 * MiB, report
    assert report["rss_after"] - report["rss_before"] < 64 * MiB, report
    assert report["pulled"] == [3_000_000, 3_000_000]
    assert report["task_result"] == 70 << 20
