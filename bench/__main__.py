"""``python -m bench``: ipkernel side by side with ipyparallel and dask.

Starts a cluster of each installed system with ``--engines`` engines
(workers), runs the workloads of issue 6 on each, alternating between the
systems every repetition, prints a table of medians and writes a JSON file.
Every process started is stopped at the end, also on errors and Ctrl-C.
With ``--remote-engines`` or ``--remote-client`` the engines (and the
client) run on a second "host" made of network namespaces (see
:mod:`bench.hosts`).
"""
import argparse
import atexit
import datetime
import os
import platform
import signal
import sys
import time
from pathlib import Path

from bench import hosts, procs, report, workloads
from bench.systems import DEFAULT_SYSTEMS, ENCRYPTED_PEERS, SYSTEMS, available

DEFAULT_JSON = Path(__file__).resolve().parent / "results.json"
FULL_TIMEOUT, QUICK_TIMEOUT = 3000, 900


#: Engine counts of ``--scale``.
SCALE_ENGINES = (32, 64, 128)


def scale_json(json_path, n, system=None):
    """Where ``--scale`` writes the results at ``n`` engines: of one system
    (``system``), or of all of them together."""
    suffix = f"-scale{n}" + (f"-{system}" if system else "")
    return json_path.with_name(f"{json_path.stem}{suffix}.json")


def scale_runs(argv, json_path, systems):
    """``(engines, system, argv)`` of each ``--scale`` run: ``argv`` without
    ``--scale``, then (the last value of an option wins) the engine count,
    workload (a), the one system and a JSON file of its own.

    Each system runs alone: dozens of idle engines and workers of the
    others (heartbeats, periodic callbacks) would otherwise take the CPU of
    the one being measured, on every system's turn."""
    rest = [a for a in argv if a != "--scale"]
    return [(n, name, rest + ["--engines", str(n), "--only", "a", "--systems", name,
                              "--json", str(scale_json(json_path, n, name))])
            for n in SCALE_ENGINES for name in systems]


def _scale(argv, args):
    """Run ``--scale``: each engine count, each system alone; then one JSON
    file and one table row per engine count, every system side by side."""
    names = [s.strip() for s in args.systems.split(",") if s.strip()]
    runs = scale_runs(argv, args.json, names)
    statuses = []
    for n, name, run in runs:
        print(f"--scale: {name} alone with {n} engines", flush=True)
        statuses.append(main(run))
    encrypted = [n for n in ENCRYPTED_PEERS if n in names]
    merged = []
    for n in SCALE_ENGINES:
        path = scale_json(args.json, n)
        if report.merge_runs([scale_json(args.json, n, name) for name in names], path,
                             names, encrypted, {"engines": n, "scale": True}):
            merged.append(path)
    rows, systems, encrypted = report.scale_rows(merged)
    if rows:
        print("\n--scale: (a) at each engine count, each system measured alone")
        print(report.table(rows, systems, encrypted))
    return max(statuses)


def parse_args(argv=None):
    """The command line as an argparse Namespace (``argv`` default: sys.argv)."""
    parser = argparse.ArgumentParser(
        prog="python -m bench", description=__doc__.split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--engines", type=int, default=2,
                        help="engines (dask: worker processes) per cluster")
    parser.add_argument("--repeat", type=int, default=5,
                        help="repetitions per workload (task workloads (c), (d): at most 3, "
                             "start-up (h): 3, memory (i): 1)")
    parser.add_argument("--quick", action="store_true",
                        help="smaller problems (500 tasks, 1,000-item map, 10 MB largest "
                             "push, 1M-element scatter, 5,000 tasks for memory)")
    parser.add_argument("--timeout", type=float, default=None,
                        help=f"bound of the whole run in seconds (default {FULL_TIMEOUT}, "
                             f"{QUICK_TIMEOUT} with --quick, for up to three systems; a "
                             "third more for each further one)")
    parser.add_argument("--json", type=Path, default=DEFAULT_JSON, help="where to write results")
    parser.add_argument("--systems", default=None,
                        help="comma-separated systems to compare (default: "
                             f"{','.join(DEFAULT_SYSTEMS)}; between hosts also "
                             f"{','.join(ENCRYPTED_PEERS)}, the peers with encryption on)")
    parser.add_argument("--only", default=None,
                        help="comma-separated workload letters to run (e.g. a,b,e)")
    parser.add_argument("--payload-cap", type=int, default=None,
                        help="pass --payload-cap BYTES to ipcontroller (default: its own)")
    parser.add_argument("--verbose", action="store_true", help="print tracebacks of errors")
    parser.add_argument("--scale", action="store_true",
                        help="run (a) execute on all engines at "
                             f"{', '.join(map(str, SCALE_ENGINES))} engines, each system "
                             "alone on the machine; one table, and a JSON file per count "
                             "(JSON stem + '-scaleN', each system's in '-scaleN-SYSTEM')")
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--remote-engines", action="store_true",
                       help="engines (workers) in a network namespace of their own, the "
                            "controller (scheduler) and the client in another, joined by a "
                            "veth pair; the bench makes and removes them (needs root and "
                            "'ip netns')")
    where.add_argument("--remote-client", action="store_true",
                       help="as --remote-engines, with the client in the engines' namespace "
                            "(away from the controller)")
    parser.add_argument("--placement", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.engines < 1 or args.repeat < 1:
        parser.error("--engines and --repeat must be at least 1")
    args.mode = (hosts.REMOTE_ENGINES if args.remote_engines else
                 hosts.REMOTE_CLIENT if args.remote_client else hosts.LOCAL)
    if args.systems is None:
        args.systems = ",".join(DEFAULT_SYSTEMS + (ENCRYPTED_PEERS if args.mode != hosts.LOCAL
                                                   else ()))
    known = [name for name, *_ in SYSTEMS]
    unknown = [s for s in args.systems.split(",") if s.strip() and s.strip() not in known]
    if unknown:
        parser.error(f"unknown system(s) in --systems: {', '.join(unknown)} "
                     f"(choose from {', '.join(known)})")
    if args.timeout is None:
        # the default bounds were sized for three systems
        count = len([s for s in args.systems.split(",") if s.strip()])
        args.timeout = (QUICK_TIMEOUT if args.quick else FULL_TIMEOUT) * max(3, count) / 3
    return args


def select(all_workloads, only):
    """The workloads whose key starts with one of the letters in ``only`` (all if None)."""
    if not only:
        return all_workloads
    letters = [x.strip() for x in only.split(",") if x.strip()]
    return [w for w in all_workloads if any(w.key.startswith(x) for x in letters)]


def _versions(names):
    found = {"python": platform.python_version()}
    for module in ["ipkernel", "ipyparallel", "distributed", "numpy", "foolscap", "twisted"]:
        try:
            found[module] = __import__(module).__version__
        except Exception:
            pass
    return found


def _source_state():
    """The commit the ipkernel code came from and its uncommitted files (the
    editable install runs the working tree as it is)."""
    import subprocess

    root = Path(__file__).resolve().parents[1]
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=root, text=True,
                              capture_output=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "ipkernel", "interfaces"],
                               cwd=root, text=True, capture_output=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return {}
    return {"commit": head, "uncommitted": [line[3:] for line in dirty.splitlines()]}


def _make_system(cls, args, placement):
    if cls.name == "ipkernel" and args.payload_cap is not None:
        return cls(controller_args=["--payload-cap", str(args.payload_cap)], placement=placement)
    return cls(placement=placement)


def _share_clusters(systems):
    """A variant runs on its base system's cluster when both are compared."""
    by_name = {s.name: s for s in systems}
    for system in systems:
        if hasattr(system, "share") and "ipkernel" in by_name:
            system.share(by_name["ipkernel"])


def _on_sigterm(signum, frame):
    raise SystemExit(128 + signum)


def main(argv=None):
    """Run the comparison; returns the exit status."""
    args = parse_args(argv)
    # Ctrl-C stops the run cleanly even where the shell started us with SIGINT ignored
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, _on_sigterm)
    if args.mode != hosts.LOCAL and args.placement is None:
        # this process makes the namespaces and runs the bench again inside them
        return hosts.run_between_hosts(sys.argv[1:] if argv is None else list(argv),
                                       args.mode, args.timeout * (len(SCALE_ENGINES)
                                                                  if args.scale else 1),
                                       log=lambda line: print(line, flush=True))
    placement = hosts.Placement.decode(args.placement) if args.placement else hosts.Placement()
    if args.scale:
        return _scale(sys.argv[1:] if argv is None else argv, args)
    wanted = [s.strip() for s in args.systems.split(",") if s.strip()]
    classes, missing = available(wanted)
    if missing:
        print(f"not installed, so not compared: {', '.join(missing)} "
              f"(pip install -e '.[bench]')")
    if not classes:
        print("nothing to run")
        return 2
    params = dict(workloads.QUICK if args.quick else workloads.FULL, engines=args.engines,
                  verbose=args.verbose)
    chosen = select(workloads.workloads(params), args.only)
    systems = [_make_system(cls, args, placement) for cls in classes]
    _share_clusters(systems)
    names = [s.name for s in systems]
    encrypted = [s.name for s in systems if s.encrypted]

    # last resort: whatever this run started and left behind is killed by pid
    atexit.register(procs.kill_descendants)

    from bench.runner import Runner

    started = time.time()
    runner = Runner(systems, chosen, params, args.repeat,
                    deadline=time.monotonic() + args.timeout,
                    log=lambda line: print(line, flush=True))
    interrupted = False
    try:
        results = runner.run()
    except KeyboardInterrupt:
        interrupted = True
        results = runner.results
        print("interrupted: stopping everything", flush=True)
    finally:
        leftovers = procs.kill_descendants()
        if leftovers:
            print(f"killed {len(leftovers)} leftover process(es):")
            for pid, cmd in leftovers:
                print(f"  {pid} {cmd}")

    rows = report.summarize([m for w in chosen for m in w.metrics], results, names, encrypted)
    when = datetime.datetime.now().astimezone().isoformat(timespec="seconds")
    source = _source_state()
    print()
    print(f"{when}  engines={args.engines} repeat={args.repeat} "
          f"{'quick' if args.quick else 'full'}  cpus={os.cpu_count()}  "
          f"wall {time.time() - started:.0f} s  ipkernel at {source.get('commit', '?')}"
          f"{' + %d uncommitted file(s)' % len(source['uncommitted']) if source.get('uncommitted') else ''}")
    print(f"placement: {placement.describe()}")
    print(report.table(rows, names, encrypted))
    print(report.legend(encrypted))
    meta = {"date": when, "engines": args.engines, "repeat": args.repeat, "quick": args.quick,
            "timeout": args.timeout, "systems": names, "missing": missing,
            "cpus": os.cpu_count(), "platform": platform.platform(),
            "versions": _versions(names), "wall_seconds": time.time() - started,
            "interrupted": interrupted, "params": params, "source": source,
            "placement": {"mode": placement.mode, "described": placement.describe()},
            "encrypted_peers": encrypted}
    args.json.parent.mkdir(parents=True, exist_ok=True)
    report.write_json(args.json, meta, rows)
    print(f"results written to {args.json}")
    return 130 if interrupted else 0


if __name__ == "__main__":
    sys.exit(main())
