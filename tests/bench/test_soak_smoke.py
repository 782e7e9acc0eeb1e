"""The soak benchmark (``python -m bench.soak``) as a tool, not a timing.

Tier 1: its book-keeping (the answer checks, error kinds, percentiles,
merging) and the SVG plot written without matplotlib.  Tier 3: a short real
soak -- 2 engines, 1 client, 1 submitter, one engine kill -- produces its
report, JSON and plot with no answer lost or doubled and leaves no process
behind; Ctrl-C (or SIGTERM) in the middle still reports and stops everything.  No
figure of speed is asserted.
"""
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from benchload import ROOT, load



tally = load("bench.soak.tally")
plot = load("bench.soak.plot")
soak_main = load("bench.soak.__main__")


# -- tier 1: the book-keeping -----------------------------------------------------------------

@pytest.mark.tier1
def test_answers_are_checked_for_wrong_lost_and_doubled():
    t = tally.Tally()
    assert t.answers({0: 5, 1: 5}, [(0, 5), (1, 5)])
    assert not t.answers({0: 6, 1: 6}, [(0, 6), (0, 6)])      # engine 0 twice, engine 1 missing
    assert not t.answers({0: 7}, [(0, None)])                  # success without the value
    assert not t.answers({0: 8}, [(0, 9)])                     # someone else's value
    assert not t.answers({0: 8}, [(0, 8), (3, 8)])             # an answer nobody asked for
    assert (t.ok, dict(t.checks)) == (4, {"wrong": 1, "lost": 2, "doubled": 2})


@pytest.mark.tier1
def test_arrays_are_compared_whole():
    numpy = pytest.importorskip("numpy")
    t = tally.Tally()
    sent = numpy.full(8, 3.0)
    changed = sent.copy()
    changed[-1] = 4.0
    assert t.answers({0: sent}, [(0, sent.copy())])
    assert not t.answers({0: sent}, [(0, changed)])
    assert not t.answers({0: sent}, [(0, sent[:4])])
    assert t.checks["wrong"] == 2


@pytest.mark.tier1
def test_error_kinds_name_the_engine_errors():
    from ipkernel.error import CompositeError, EngineError, RemoteError
    composite = CompositeError("m", [(EngineError, EngineError("gone"), None),
                                     (RemoteError, RemoteError("NameError", "x"), None)])
    assert tally.error_kind(composite) == "CompositeError[EngineError,NameError]"
    assert tally.error_kind(TimeoutError()) == "TimeoutError"
    t = tally.Tally()
    t.error("push_1MB", composite)
    t.call("push_1MB", 0.5)
    assert t.to_json()["errors"] == {"push_1MB: CompositeError[EngineError,NameError]": 1}
    assert t.to_json()["calls"] == {"push_1MB": 2}


@pytest.mark.tier1
def test_merge_and_latency_table():
    a, b = tally.Tally(), tally.Tally()
    for i in range(1, 100):
        a.call("apply", i / 1000)
    b.call("apply", 0.1)
    b.error("apply", "CallTimeout")
    b.checks["lost"] += 1
    merged = tally.merge([a.to_json(), b.to_json()])
    row = tally.latency_table(merged)["apply"]
    assert row == {"calls": 101, "answered": 100, "p50_ms": 50.0, "p99_ms": 99.0}
    assert merged["checks"]["lost"] == 1 and merged["errors"] == {"apply: CallTimeout": 1}
    assert tally.percentile([], 50) is None


@pytest.mark.tier1
def test_svg_plot_without_matplotlib(tmp_path):
    label = "ipkernel <controller>"
    path = plot._svg(tmp_path / "rss.svg", {label: [(0, 10 << 20), (5, 20 << 20)]},
                     {label: [2.5]})
    text = path.read_text()
    assert text.startswith("<svg") and "<polyline" in text and "20 MiB" in text
    assert "&lt;controller&gt;" in text


@pytest.mark.tier1
def test_options_defaults_and_bad_values():
    args = soak_main.parse_args([])
    assert (args.minutes, args.engines, args.clients, args.submitters) == (10, 16, 8, 4)
    assert args.systems == ["ipkernel", "dask"] and args.out == soak_main.DEFAULT_OUT
    for bad in (["--minutes", "0"], ["--engines", "0"], ["--systems", "spark"]):
        with pytest.raises(SystemExit):
            soak_main.parse_args(bad)


# -- tier 3: a short real soak ----------------------------------------------------------------

def _soak(out, *extra):
    return subprocess.Popen(
        [sys.executable, "-m", "bench.soak", "--engines", "2", "--clients", "1",
         "--submitters", "1", "--systems", "ipkernel", "--call-timeout", "20",
         "--out", str(out), *extra],
        cwd=ROOT, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        text=True)


def _gone(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


def _assert_all_stopped(phase):
    pids = [phase["pids"]["controller"], *phase["pids"]["engines"], *phase["pids"]["workers"]]
    assert len(pids) >= 4
    deadline = time.monotonic() + 10
    while not all(_gone(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert [p for p in pids if not _gone(p)] == []


@pytest.fixture
def soak_process():
    started = []

    def start(out, *extra):
        started.append(_soak(out, *extra))
        return started[-1]
    yield start
    for popen in started:
        if popen.poll() is None:
            popen.kill()
        popen.communicate(timeout=30)


@pytest.mark.tier3
@pytest.mark.timeout(150)
def test_short_soak_with_one_kill_reports_and_loses_nothing(tmp_path, soak_process):
    popen = soak_process(tmp_path, "--minutes", "0.25", "--kill-every", "4", "--max-kills", "1")
    output, _ = popen.communicate(timeout=140)
    assert popen.returncode == 0, output
    data = json.loads((tmp_path / "soak.json").read_text())
    phase = data["phases"]["ipkernel"]
    assert phase["kills"] == 1 and phase["restarts"] == 1, output
    assert phase["checks"]["lost"] == 0 and phase["checks"]["doubled"] == 0, output
    assert phase["answers_ok"] > 0 and phase["tasks"]["completed"] > 0
    assert phase["tasks"]["submitted"] == phase["tasks"]["completed"] + phase["tasks"]["failed"]
    for kind in ("execute", "push_small", "pull_1MB", "apply", "map", "task_batch",
                 "task_single"):
        assert phase["latency"][kind]["answered"] > 0, kind
    assert phase["rss"]["min"] <= phase["rss"]["final"] <= phase["rss"]["max"]
    assert len(phase["rss_samples"]) >= 5
    assert Path(data["plot"]).is_file() and Path(data["plot"]).stat().st_size > 0
    assert phase["workers_without_report"] == [] and phase["workers_stopped_late"] == 0
    for line in ("== ipkernel: 2 engines", "LOST 0, DOUBLED 0", "kills 1, restarts 1",
                 "p50 ms", "RSS of ipkernel controller"):
        assert line in output
    _assert_all_stopped(phase)


@pytest.mark.tier3
@pytest.mark.timeout(150)
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_ctrl_c_stops_everything_and_still_reports(tmp_path, soak_process, signum):
    popen = soak_process(tmp_path, "--minutes", "5", "--kill-every", "1000")
    logs = [tmp_path / "ipkernel" / f"{role}.log" for role in ("client-1", "submitter-2")]
    deadline = time.monotonic() + 90
    while not all(p.exists() and "started" in p.read_text() for p in logs):
        assert time.monotonic() < deadline and popen.poll() is None, "the soak did not start"
        time.sleep(0.05)
    popen.send_signal(signum)
    output, _ = popen.communicate(timeout=120)
    assert popen.returncode == 130, output
    assert "interrupted" in output
    data = json.loads((tmp_path / "soak.json").read_text())
    assert data["interrupted"] is True
    phase = data["phases"]["ipkernel"]
    assert phase["interrupted"] is True and phase["wall_seconds"] < 120
    assert phase["workers_without_report"] == [], output
    _assert_all_stopped(phase)


@pytest.mark.tier1
def test_ratios_of_ipkernel_to_dask():
    def phase(p50, p99, rate):
        return {"latency": {"task_batch": {"p50_ms": p50, "p99_ms": p99}},
                "throughput_tasks_per_s": rate}
    ratios = soak_main.ratios(phase(10, 40, 300), phase(20, 20, 100))
    assert ratios == {"task_batch p50": 0.5, "task_batch p99": 2.0, "throughput": 3.0}
    assert soak_main.ratios(phase(None, None, 0), phase(20, 20, 100)) == {}


@pytest.mark.tier1
def test_the_answers_a_composite_error_carries_are_checked_too():
    worker = load("bench.soak.worker")

    class Partial(Exception):
        successes = {0: 5, 2: 6}  # engine 1 failed; engine 2 answered someone else's value

    t = tally.Tally()
    expected = {0: 5, 1: 5, 2: 5}
    assert not worker.check(t, False, Partial(), expected, None)
    assert (t.ok, t.checks["wrong"], t.checks["lost"]) == (1, 1, 0)
    assert worker.check(t, True, [5, 5, 5], expected, lambda values: zip([0, 1, 2], values))
    assert worker.check(t, False, ValueError(), expected, None) is False  # nothing carried
    assert t.ok == 4
