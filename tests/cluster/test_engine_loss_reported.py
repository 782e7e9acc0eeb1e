"""Tier 3: an engine that dies during a call to 'all' is reported, and the
other engines' results are kept (issue 13: a push to 'all' during which an
engine died returned one None and no error; a CompositeError threw the
healthy engines' results away).

The session (engine_loss_session.py) makes one real engine process
``os._exit()`` inside an execute, a push (with a large value on the data
channel), an apply and a non-blocking execute fetched later.
"""
import json
from pathlib import Path

import pytest

pytestmark = [pytest.mark.tier3, pytest.mark.timeout(240)]

SESSION = Path(__file__).with_name("engine_loss_session.py")


def run_session(reaper, tmp_path):
    out = tmp_path / "report.json"
    reaper.run_session(SESSION, str(out), ok="ENGINE LOSS SESSION OK", timeout=200)
    return json.loads(out.read_text())


def test_an_engine_dying_in_a_call_to_all_is_reported_with_the_others_results(reaper,
                                                                             tmp_path):
    report = run_session(reaper, tmp_path)
    for call in ("execute", "push", "apply", "pending"):
        seen = report[call]
        ids, victim = seen["ids"], seen["victim"]
        assert seen["raised"], (call, seen)              # never a silent partial answer
        assert seen["engine_ids"] == ids, (call, seen)
        assert seen["failed"] == [ids.index(victim)], (call, seen)
        ((etype, message),) = seen["errors"]
        assert etype == "EngineError" and f"engine {victim} " in message, (call, seen)
        assert sorted(int(k) for k in seen["successes"]) == [i for i in ids if i != victim]
        assert f"[{victim}:" in seen["text"] and "2 of 3 engines succeeded" in seen["text"]

    # what the healthy engines returned is there
    assert set(report["push"]["successes"].values()) == {"None"}
    apply, pids = report["apply"], report["apply_pids"]
    assert apply["successes"] == {k: str(pids[k]) for k in apply["successes"]}
    for call in ("execute", "pending"):
        for engine_id, text in report[call]["successes"].items():
            assert f"'id': {engine_id}" in text and "'number'" in text
