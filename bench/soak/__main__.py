"""``python -m bench.soak``: client and task-submitter processes against a
cluster whose engines are killed at random; the same task load on dask.

For each system in turn: start the cluster, start the worker processes
(see :mod:`bench.soak.worker`), kill -9 a random engine every few seconds,
sample the controller's RSS every second, and when the time is up collect
what every worker counted.  Prints the report, writes ``soak.json`` and the
RSS plot into ``--out``.  Everything started is stopped at the end, also on
Ctrl-C and SIGTERM.  Exit status 1 when an answer was lost or doubled.
"""
import argparse
import atexit
import datetime
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from bench import procs
from bench.soak import tally as tallies
from bench.soak.chaos import Killer, Sampler
from bench.soak.plot import write_plot

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_OUT = ROOT / "bench" / "soak-out"
#: Seconds granted to the workers past the end (their last call, the final
#: collect of late tasks, writing the tally), and to stop them after that.
GRACE, STOP_TIMEOUT = 30, 10
#: Seconds to wait at the end for the last killed engines to be back.
SETTLE_TIMEOUT = 20
#: Seconds to wait for the killer (it may be starting a replacement) and sampler.
READY_JOIN = 90
SYSTEM_NAMES = ("ipkernel", "dask")


def parse_args(argv=None):
    """The command line as an argparse Namespace."""
    p = argparse.ArgumentParser(prog="python -m bench.soak", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--minutes", type=float, default=10, help="length of each system's run")
    p.add_argument("--engines", type=int, default=16, help="engines (dask: workers)")
    p.add_argument("--clients", type=int, default=8,
                   help="multi-engine client processes (ipkernel only)")
    p.add_argument("--submitters", type=int, default=4, help="task-submitter processes")
    p.add_argument("--kill-every", type=float, default=10, metavar="SECONDS",
                   help="mean seconds between two engine kills (each wait uniform in "
                        "0.5-1.5 times it)")
    p.add_argument("--max-kills", type=int, default=None, help="stop killing after this many")
    p.add_argument("--call-timeout", type=float, default=30,
                   help="bound of every call; a call that takes longer is an error")
    p.add_argument("--seed", type=int, default=0, help="seed of the kills and the targets")
    p.add_argument("--systems", default=",".join(SYSTEM_NAMES),
                   help="comma-separated: ipkernel, dask (the task load only)")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, help="directory of the results")
    args = p.parse_args(argv)
    if args.minutes <= 0 or args.kill_every <= 0 or args.call_timeout <= 0:
        p.error("--minutes, --kill-every and --call-timeout must be positive")
    if args.engines < 1 or args.clients < 0 or args.submitters < 0:
        p.error("--engines must be at least 1, --clients and --submitters at least 0")
    args.systems = [s.strip() for s in args.systems.split(",") if s.strip()]
    unknown = set(args.systems) - set(SYSTEM_NAMES)
    if unknown or not args.systems:
        p.error(f"--systems takes some of {', '.join(SYSTEM_NAMES)}, "
                f"not {','.join(sorted(unknown)) or 'nothing'}")
    return args


def make_system(name, engines, log):
    """The soak adapter of system ``name``; None (with a printed reason) when
    it is not installed."""
    if name == "dask":
        try:
            import distributed  # noqa: F401
        except ImportError:
            log("dask: not installed, not compared (pip install -e '.[bench]')")
            return None
        from bench.soak.systems import DaskSoak
        return DaskSoak(engines)
    from bench.soak.systems import IpkernelSoak
    return IpkernelSoak(engines)


class Workers:
    """The worker processes of one phase; :meth:`stop` ends those still running."""

    def __init__(self):
        self.popens = []

    def start(self, argv, log_path):
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(
            [str(ROOT)] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]))
        with open(log_path, "wb") as log:
            self.popens.append(subprocess.Popen(
                argv, cwd=ROOT, env=env, stdin=subprocess.DEVNULL, stdout=log,
                stderr=subprocess.STDOUT))

    def wait(self, deadline):
        for popen in self.popens:
            try:
                popen.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                pass

    def stop(self):
        """SIGTERM (they write what they counted), SIGKILL after STOP_TIMEOUT;
        returns how many had to be stopped."""
        running = [p for p in self.popens if p.poll() is None]
        for popen in running:
            popen.terminate()
        for popen in running:
            try:
                popen.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                popen.kill()
                popen.wait(STOP_TIMEOUT)
        return len(running)


def run_phase(system, args, log):
    """Run the soak against ``system``; a dict of everything it measured."""
    seconds = args.minutes * 60
    work = args.out / system.name
    work.mkdir(parents=True, exist_ok=True)
    log(f"{system.name}: starting {args.engines} engines")
    started = time.monotonic()
    system.start()
    log(f"{system.name}: up after {time.monotonic() - started:.1f} s; soaking for {seconds:g} s")
    stop, workers, outputs, interrupted = threading.Event(), Workers(), [], False
    sampler = Sampler(system.controller_pid, stop)
    killer = Killer(system.engine_pids, args.kill_every, args.seed, stop, replace=system.replace,
                    max_kills=args.max_kills, log=log)
    counts = {"client": args.clients, "submitter": args.submitters,
              "dask-submitter": args.submitters}
    try:
        index = 0
        for role in system.roles:
            for _ in range(counts[role]):
                index += 1
                out = work / f"{role}-{index}.json"
                out.unlink(missing_ok=True)
                outputs.append(out)
                workers.start([sys.executable, "-m", "bench.soak.worker", role,
                               "--index", str(index), "--seconds", str(seconds),
                               "--call-timeout", str(args.call_timeout),
                               "--seed", str(args.seed * 1000 + index), "--out", str(out),
                               *system.worker_args(role)], work / f"{role}-{index}.log")
        sampler.start()
        killer.start()
        began = time.monotonic()
        try:
            workers.wait(began + seconds + args.call_timeout + GRACE)
        except KeyboardInterrupt:  # Ctrl-C: stop, but report what was counted
            interrupted = True
        wall = time.monotonic() - began
    finally:
        stop.set()
        stopped = workers.stop()
        killer.join(READY_JOIN)
        sampler.join(READY_JOIN)
    alive_at_end = killer.settle(args.engines, 0 if interrupted else SETTLE_TIMEOUT)
    restarts = killer.restarts
    parts, missing = [], []
    for out in outputs:
        try:
            parts.append(json.loads(out.read_text()))
        except (OSError, ValueError):
            missing.append(out.name)
    merged = tallies.merge(parts)
    tasks = {}
    for part in parts:
        for key, n in (part.get("tasks") or {}).items():
            tasks[key] = tasks.get(key, 0) + n
    merged["checks"]["lost"] += tasks.get("unfinished", 0)
    # tasks/s while the submitters submitted (their start-up is not counted)
    busy = tasks.pop("active_seconds", 0) / max(1, args.submitters)
    rss = [b for _, b in sampler.samples]
    return {
        "engines": args.engines, "seconds": seconds, "wall_seconds": round(wall, 1),
        "interrupted": interrupted,
        "latency": tallies.latency_table(merged), "errors": merged["errors"],
        "checks": merged["checks"], "answers_ok": merged["ok"], "tasks": tasks,
        "throughput_tasks_per_s": round(tasks.get("completed", 0) / busy, 2) if busy else None,
        "kills": len(killer.kills), "kill_times": [t for t, _ in killer.kills],
        "restarts": restarts, "restarted_by": system.restarted_by,
        "engines_alive_at_end": alive_at_end,
        "restart_failures": killer.failures, "workers_stopped_late": stopped,
        # every process of the phase, so a caller can check none is left
        "pids": {"controller": system.controller_pid(), "engines": sorted(killer.seen),
                 "workers": [p.pid for p in workers.popens]},
        "workers_without_report": missing,
        "rss_of": system.rss_of, "rss_samples": sampler.samples,
        "rss": {"min": min(rss), "max": max(rss), "final": rss[-1]} if rss else None,
    }


def ratios(ipk, dask):
    """ipkernel / dask for the task latencies (lower: ipkernel leads) and the
    task throughput (higher: ipkernel leads)."""
    out = {}
    for kind in ("task_batch", "task_single"):
        a, b = ipk["latency"].get(kind, {}), dask["latency"].get(kind, {})
        for q in ("p50_ms", "p99_ms"):
            if a.get(q) and b.get(q):
                out[f"{kind} {q[:3]}"] = round(a[q] / b[q], 3)
    a, b = ipk["throughput_tasks_per_s"], dask["throughput_tasks_per_s"]
    if a and b:
        out["throughput"] = round(a / b, 3)
    return out


def _mb(n):
    return f"{n / 2 ** 20:.1f}"


def report(name, phase):
    """The printed report of one phase, as text."""
    lines = [f"== {name}: {phase['engines']} engines, {phase['wall_seconds']:g} s",
             f"  {'call':<16}{'calls':>8}{'answered':>10}{'p50 ms':>10}{'p99 ms':>10}"]
    for kind, row in phase["latency"].items():
        p50 = "-" if row["p50_ms"] is None else f"{row['p50_ms']:.2f}"
        p99 = "-" if row["p99_ms"] is None else f"{row['p99_ms']:.2f}"
        lines.append(f"  {kind:<16}{row['calls']:>8}{row['answered']:>10}{p50:>10}{p99:>10}")
    lines.append("  errors by kind:" + ("" if phase["errors"] else " none"))
    for kind, n in sorted(phase["errors"].items(), key=lambda kv: -kv[1]):
        lines.append(f"    {n:>6}  {kind}")
    checks = phase["checks"]
    lines.append(f"  answers checked right {phase['answers_ok']}, wrong {checks['wrong']}, "
                 f"LOST {checks['lost']}, DOUBLED {checks['doubled']}")
    if phase["tasks"]:
        t = phase["tasks"]
        lines.append(f"  tasks: submitted {t.get('submitted', 0)}, completed "
                     f"{t.get('completed', 0)}, failed {t.get('failed', 0)}, unfinished "
                     f"{t.get('unfinished', 0)}; {phase['throughput_tasks_per_s']} tasks/s")
    lines.append(f"  kills {phase['kills']}, restarts {phase['restarts']} "
                 f"(by {phase['restarted_by']}), {phase['engines_alive_at_end']} of "
                 f"{phase['engines']} engines alive at the end"
                 + (f", {len(phase['restart_failures'])} failed: {phase['restart_failures'][0]}"
                    if phase["restart_failures"] else ""))
    if phase["rss"]:
        r = phase["rss"]
        lines.append(f"  RSS of {phase['rss_of']}, MiB: min {_mb(r['min'])}, max {_mb(r['max'])}, "
                     f"final {_mb(r['final'])}")
    if phase["workers_without_report"]:
        lines.append(f"  workers without a report: {', '.join(phase['workers_without_report'])}")
    return "\n".join(lines)


def main(argv=None):
    """Run the soak; returns the exit status."""
    args = parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)

    def log(line):
        print(line, flush=True)

    atexit.register(procs.kill_descendants)
    signal.signal(signal.SIGTERM, signal.default_int_handler)  # reported like Ctrl-C
    when = datetime.datetime.now().astimezone().isoformat(timespec="seconds")
    phases, interrupted = {}, False
    log("ipyparallel: not in the soak (it would add another --minutes per run on a small "
        "machine); python -m bench compares it")
    try:
        for name in args.systems:
            system = make_system(name, args.engines, log)
            if system is None:
                continue
            try:
                phases[name] = run_phase(system, args, log)
            finally:
                system.stop()
            if phases[name]["interrupted"]:
                raise KeyboardInterrupt
    except KeyboardInterrupt:
        interrupted = True
        log("interrupted: stopping everything")
    finally:
        leftovers = procs.kill_descendants()
        if leftovers:
            log(f"killed {len(leftovers)} leftover process(es): "
                + "; ".join(f"{pid} {cmd}" for pid, cmd in leftovers))
    print()
    print(f"soak {when}: {args.minutes:g} min per system, {args.clients} clients, "
          f"{args.submitters} submitters, a kill every ~{args.kill_every:g} s, seed {args.seed}, "
          f"cpus={os.cpu_count()}")
    for name, phase in phases.items():
        print(report(name, phase))
    result = {"date": when, "args": {k: str(v) if isinstance(v, Path) else v
                                     for k, v in vars(args).items()},
              "interrupted": interrupted, "phases": phases}
    if "ipkernel" in phases and "dask" in phases:
        result["ratios"] = ratios(phases["ipkernel"], phases["dask"])
        print("== ipkernel / dask (task load; latency below 1 and throughput above 1: "
              "ipkernel leads)")
        for key, value in result["ratios"].items():
            print(f"  {key:<20}{value:>8.2f}")
    if phases:
        plot = write_plot(args.out / "soak-rss",
                          {p["rss_of"]: p["rss_samples"] for p in phases.values()},
                          {p["rss_of"]: p["kill_times"] for p in phases.values()})
        result["plot"] = str(plot)
        print(f"RSS plot: {plot}")
    (args.out / "soak.json").write_text(json.dumps(result, indent=1) + "\n")
    print(f"figures: {args.out / 'soak.json'}")
    if interrupted:
        return 130
    bad = any(p["checks"]["lost"] or p["checks"]["doubled"] for p in phases.values())
    return 1 if bad or not phases else 0


if __name__ == "__main__":
    sys.exit(main())
