"""Tier 1: the benchmark harness's plumbing, without clusters or timing.

Argument parsing, workload selection, the medians / ratio / table and the
JSON file, with made-up numbers; none of the bench extras is needed.
"""
import importlib
import json
from pathlib import Path

import pytest
from benchload import load

pytestmark = pytest.mark.tier1

cli = load("bench.__main__")
from bench import report, workloads  # noqa: E402
from bench.runner import CallTimeout, Worker, short_error  # noqa: E402


def test_defaults_and_quick_timeout():
    args = cli.parse_args([])
    assert (args.engines, args.repeat, args.quick) == (2, 5, False)
    assert args.timeout == cli.FULL_TIMEOUT
    quick = cli.parse_args(["--quick", "--engines", "3", "--json", "/tmp/x.json"])
    assert quick.timeout == cli.QUICK_TIMEOUT and quick.engines == 3
    assert quick.json == Path("/tmp/x.json")


def test_bad_engine_count_is_refused():
    with pytest.raises(SystemExit):
        cli.parse_args(["--engines", "0"])


def test_every_issue_workload_is_defined_and_selectable():
    params = dict(workloads.FULL, engines=2)
    all_workloads = workloads.workloads(params)
    letters = {w.key[0] for w in all_workloads}
    assert letters == set("abcdefghi")
    assert [w.key for w in cli.select(all_workloads, "e")] == ["e10KB", "e1MB", "e100MB"]
    assert {w.phase for w in all_workloads} == {"startup", "main", "memory"}
    for w in all_workloads:
        for m in w.metrics:
            assert m.better in (workloads.LOWER, workloads.HIGHER)


def _fake_rows():
    metrics = [workloads.Metric("a.x", "(a) latency", "ms/call", workloads.LOWER),
               workloads.Metric("c.x", "(c) throughput", "tasks/s", workloads.HIGHER),
               workloads.Metric("e.x", "(e) broken", "MB/s", workloads.HIGHER)]
    results = {
        "a.x": {"ipkernel": {"samples": [4, 2, 3], "errors": []},
                "ipyparallel": {"samples": [5, 6, 7], "errors": []},
                "dask": {"samples": [1.5], "errors": []}},
        "c.x": {"ipkernel": {"samples": [400, 300, 500], "errors": []},
                "ipyparallel": {"samples": [], "errors": ["timeout after 600 s"]},
                "dask": {"samples": [200], "errors": []}},
        "e.x": {"ipkernel": {"samples": [], "errors": ["PayloadTooLarge: 100000000 > cap"]},
                "ipyparallel": {"samples": [10], "errors": []},
                "dask": {"samples": [20], "errors": []}},
    }
    return report.summarize(metrics, results, ["ipkernel", "ipyparallel", "dask"])


def test_ratio_uses_the_best_peer_in_the_better_direction():
    latency, throughput, broken = _fake_rows()
    assert latency["best_peer"] == "dask"
    assert latency["ratio"] == pytest.approx(3 / 1.5)
    assert latency["ipkernel_leads"] is False
    assert throughput["best_peer"] == "dask"
    assert throughput["ratio"] == pytest.approx(2.0)
    assert throughput["ipkernel_leads"] is True
    assert broken["ratio"] is None


def test_table_shows_medians_errors_and_ratio(tmp_path):
    rows = _fake_rows()
    text = report.table(rows, ["ipkernel", "ipyparallel", "dask"])
    assert "2.00 (vs dask)" in text
    assert "timeout after 600 s" in text
    assert "error: PayloadTooLarge" in text
    single = report.table(rows, ["ipkernel"])
    assert "ipkernel/best peer" not in single
    path = tmp_path / "r.json"
    report.write_json(path, {"date": "today"}, rows)
    data = json.loads(path.read_text())
    assert data["meta"]["date"] == "today"
    assert data["results"][0]["systems"]["ipkernel"]["median"] == 3


def test_ipkernel_with_its_dashboard_open_is_compared_with_ipkernel_not_with_the_peers():
    metrics = [workloads.Metric("a.x", "(a) latency", "ms/call", workloads.LOWER)]
    results = {"a.x": {"ipkernel": {"samples": [2.0], "errors": []},
                       "ipkernel-watched": {"samples": [2.1], "errors": []},
                       "dask": {"samples": [4.0], "errors": []}}}
    systems = ["ipkernel", "ipkernel-watched", "dask"]
    (row,) = report.summarize(metrics, results, systems)
    assert row["best_peer"] == "dask" and row["ratio"] == pytest.approx(0.5)
    assert row["ratio_ipkernel-watched"] == pytest.approx(1.05)
    text = report.table([row], systems)
    assert "ipkernel-watched/ipkernel" in text and "1.050" in text


def test_worker_timeout_and_errors():
    worker = Worker("test")
    try:
        assert worker.call(lambda: 42, timeout=5) == 42
        with pytest.raises(ZeroDivisionError):
            worker.call(lambda: 1 / 0, timeout=5)
        with pytest.raises(CallTimeout):
            worker.call(lambda: __import__("time").sleep(0.3), timeout=0.05)
    finally:
        worker.retire()
    assert short_error(ValueError("a\nb")) == "ValueError: a"


def test_task_rows_say_how_they_are_called_and_every_system_has_both():
    # Like for like: each task row names its calling style, and every system
    # implements both styles itself (none falls back to the base class).
    from bench.systems import SYSTEMS
    from bench.systems.base import System

    labels = [m.label for w in workloads.workloads(workloads.QUICK | {"engines": 2})
              for m in w.metrics if m.key.startswith("c.")]
    assert len(labels) == 2
    assert labels[0].endswith("one-by-one") and labels[1].endswith("bulk")
    for _name, module, cls, _requirement in SYSTEMS:
        system = getattr(importlib.import_module(module), cls)
        for method in ("run_tasks", "run_tasks_bulk"):
            assert getattr(system, method) is not getattr(System, method), (cls, method)


def test_scale_runs_execute_on_all_at_each_engine_count_each_system_alone(tmp_path):
    runs = cli.scale_runs(["--quick", "--scale", "--engines", "2", "--systems", "ipkernel,dask"],
                          tmp_path / "r.json", ["ipkernel", "dask"])
    parsed = [cli.parse_args(run) for _, _, run in runs]
    assert [p.engines for p in parsed] == [32, 32, 64, 64, 128, 128]
    assert list(cli.SCALE_ENGINES) == [32, 64, 128]
    assert [p.systems for p in parsed] == ["ipkernel", "dask"] * 3
    assert [(n, name) for n, name, _ in runs] == [(n, s) for n in (32, 64, 128)
                                                  for s in ("ipkernel", "dask")]
    assert all(p.only == "a" and p.quick and not p.scale for p in parsed)
    assert [p.json.name for p in parsed][:2] == ["r-scale32-ipkernel.json", "r-scale32-dask.json"]
    assert cli.scale_json(tmp_path / "r.json", 64).name == "r-scale64.json"


def test_a_failed_start_logs_the_whole_message_and_marks_the_system_down():
    from bench.runner import Runner

    class Broken:
        name = "ipkernel"

        def start(self, n):
            raise RuntimeError("ipcontroller exited with status 1; its log:\nTraceback\nBoom")

        def stop(self):
            pass
    lines = []
    runner = Runner([Broken()], [], {"engines": 2}, 1, deadline=1e18, log=lines.append)
    slot = runner.slots[0]
    try:
        runner._start_main(slot)
    finally:
        slot.worker.retire()
    assert not slot.up and slot.down_reason.startswith("start failed: RuntimeError: ipcontroller")
    assert lines[1:] == ["    Traceback", "    Boom",
                         "  ipkernel: start failed: RuntimeError: ipcontroller exited with "
                         "status 1; its log:"]
