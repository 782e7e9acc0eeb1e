"""The workloads of issue 6 (a)-(i): what is measured, in which unit, and
which direction is better.

A :class:`Workload` runs one repetition on one :class:`~bench.systems.base.System`
and returns ``{metric key: value}``; all timing happens here, with
:func:`time.perf_counter` around the system's operation only (setup such as
making arrays, and cleanup such as clearing results, is outside).
"""
import time
from dataclasses import dataclass, field

LOWER, HIGHER = "lower", "higher"
MB = 1_000_000  # decimal megabytes: MB/s = bytes / 1e6 / s

#: Problem sizes of a full run (issue 6) and of ``--quick``.
FULL = dict(calls=50, tasks=5000, lb_map=10_000, sizes=(10_000, MB, 100 * MB),
            scatter=10_000_000, direct_map=10_000, memory_tasks=50_000, startup_reps=3,
            heavy_reps=3)
QUICK = dict(calls=20, tasks=500, lb_map=1000, sizes=(10_000, MB, 10 * MB),
             scatter=1_000_000, direct_map=10_000, memory_tasks=5000, startup_reps=1,
             heavy_reps=2)


@dataclass(frozen=True)
class Metric:
    """One row of the table: ``key`` (JSON), ``label``, ``unit`` and ``better``
    (:data:`LOWER` or :data:`HIGHER`)."""
    key: str
    label: str
    unit: str
    better: str


@dataclass
class Workload:
    """A measured job: ``run(system, params)`` does one repetition.

    ``phase`` is ``"startup"`` (fresh clusters, before the main ones),
    ``"main"`` (on the running clusters) or ``"memory"`` (fresh clusters,
    after the main ones stopped); ``reps(params, repeat)`` is the number of
    repetitions and ``timeout`` the seconds one repetition may take.
    """
    key: str
    metrics: list
    run: object
    phase: str = "main"
    reps: object = field(default=lambda params, repeat: repeat)
    timeout: float = 120


def _seconds(func, *args):
    start = time.perf_counter()
    result = func(*args)
    return time.perf_counter() - start, result


def _size_name(nbytes):
    return f"{nbytes // MB} MB" if nbytes >= MB else f"{nbytes // 1000} KB"


# -- (a), (b), (g): latency ----------------------------------------------------------------

def _execute(system, params):
    elapsed, _ = _seconds(lambda: [system.execute_all() for _ in range(params["calls"])])
    return {"a.execute_all": elapsed / params["calls"] * 1e3}


def _apply(system, params):
    elapsed, _ = _seconds(lambda: [system.apply_one() for _ in range(params["calls"])])
    return {"b.apply_one": elapsed / params["calls"] * 1e3}


def _direct_map(system, params):
    n = params["direct_map"]
    elapsed, result = _seconds(system.direct_map, n)
    _check(list(result) == [x ** 2 for x in range(n)], "direct map gave wrong results")
    return {"g.direct_map": elapsed}


# -- (c), (d): load balancing --------------------------------------------------------------

def _task_rate(method, metric):
    """A workload timing ``system.<method>(n)`` for the configured task count."""
    def run(system, params):
        n = params["tasks"]
        try:
            elapsed, _ = _seconds(getattr(system, method), n)
        finally:
            system.clear_tasks()
        return {metric: n / elapsed}
    return run


_tasks = _task_rate("run_tasks", "c.tasks")
_tasks_bulk = _task_rate("run_tasks_bulk", "c.tasks_bulk")


def _lb_map(system, params):
    n = params["lb_map"]
    try:
        elapsed, result = _seconds(system.lb_map, n)
    finally:
        system.clear_tasks()
    _check(len(list(result)) == n, "load-balanced map gave wrong number of results")
    return {"d.lb_map": elapsed}


# -- (e), (f): data --------------------------------------------------------------------------

def _push_pull(nbytes):
    def run(system, params):
        import numpy

        array = numpy.random.default_rng(0).random(nbytes // 8)
        count = max(1, min(20, 10 * MB // nbytes))  # repeat small transfers inside one rep
        out = {}
        for name, op in (("push_all", lambda: system.push(array, True)),
                         ("push_one", lambda: system.push(array, False))):
            elapsed, _ = _seconds(lambda: [op() for _ in range(count)])
            out[f"e.{name}.{nbytes}.ms"] = elapsed / count * 1e3
            out[f"e.{name}.{nbytes}.MBps"] = nbytes * count / elapsed / MB
        elapsed, back = _seconds(lambda: [system.pull_one() for _ in range(count)])
        _check(back[-1].shape == array.shape, "pulled array has the wrong shape")
        out[f"e.pull_one.{nbytes}.ms"] = elapsed / count * 1e3
        out[f"e.pull_one.{nbytes}.MBps"] = nbytes * count / elapsed / MB
        return out
    return run


def _push_pull_metrics(nbytes):
    size = _size_name(nbytes)
    rows = []
    for name, text in (("push_all", f"(e) push {size} to all engines"),
                       ("push_one", f"(e) push {size} to one engine"),
                       ("pull_one", f"(e) pull {size} from one engine")):
        rows.append(Metric(f"e.{name}.{nbytes}.ms", text, "ms", LOWER))
        rows.append(Metric(f"e.{name}.{nbytes}.MBps", text, "MB/s", HIGHER))
    return rows


def _scatter_gather(system, params):
    import numpy

    array = numpy.random.default_rng(1).random(params["scatter"])
    scatter_time, _ = _seconds(system.scatter, array)
    gather_time, back = _seconds(system.gather)
    _check(len(back) == len(array), "gathered array has the wrong length")
    return {"f.scatter": scatter_time, "f.gather": gather_time}


# -- (h), (i): start-up and memory -----------------------------------------------------------

def _startup(system, params):
    elapsed, stop = _seconds(system.startup, params["engines"])
    stop()
    return {"h.startup": elapsed}


def _memory(system, params):
    found = system.memory(params["engines"], params["memory_tasks"])
    return {f"i.{when}.{kind}": (value / MB if value is not None else None)
            for when, memory in found.items() for kind, value in memory.items()}


def _check(condition, message):
    if not condition:
        raise AssertionError(message)


def workloads(params):
    """The workloads for these problem sizes, in the order they run (and print)."""
    heavy = lambda p, repeat: min(repeat, p["heavy_reps"])  # noqa: E731
    n_tasks, n_map, n_mem = params["tasks"], params["lb_map"], params["memory_tasks"]
    n_scatter = params["scatter"]
    result = [
        Workload("h", [Metric("h.startup", f"(h) start to {params['engines']} engines registered",
                              "s", LOWER)],
                 _startup, phase="startup", reps=lambda p, r: p["startup_reps"], timeout=180),
        Workload("a", [Metric("a.execute_all", "(a) execute('a=1') on all engines",
                              "ms/call", LOWER)], _execute),
        Workload("b", [Metric("b.apply_one", "(b) apply no-op on one engine", "ms/call",
                              LOWER)], _apply),
        Workload("g", [Metric("g.direct_map", f"(g) direct map x**2 over {params['direct_map']:,}",
                              "s", LOWER)], _direct_map),
    ]
    for nbytes in params["sizes"]:
        result.append(Workload(f"e{_size_name(nbytes).replace(' ', '')}",
                               _push_pull_metrics(nbytes), _push_pull(nbytes),
                               timeout=max(120, 6 * nbytes / MB)))
    result += [
        Workload("f", [Metric("f.scatter", f"(f) scatter {n_scatter:,} float64", "s", LOWER),
                       Metric("f.gather", f"(f) gather {n_scatter:,} float64", "s", LOWER)],
                 _scatter_gather, timeout=300),
        Workload("c", [Metric("c.tasks", f"(c) {n_tasks:,} load-balanced no-op tasks, one-by-one",
                              "tasks/s", HIGHER)], _tasks, reps=heavy, timeout=600),
        Workload("cb", [Metric("c.tasks_bulk", f"(c) {n_tasks:,} load-balanced no-op tasks, bulk",
                               "tasks/s", HIGHER)], _tasks_bulk, reps=heavy, timeout=600),
        Workload("d", [Metric("d.lb_map", f"(d) load-balanced map over {n_map:,}, bulk", "s",
                              LOWER)], _lb_map, reps=heavy, timeout=600),
        Workload("i", [Metric(f"i.{when}.{kind}", f"(i) controller {kind.upper()} {text}", "MB",
                              LOWER)
                       for when, text in (("start", "idle"),
                                          ("tasks", f"after {n_mem:,} tasks"),
                                          ("clear", "after clear"))
                       for kind in ("rss", "pss")],
                 _memory, phase="memory", reps=lambda p, r: 1, timeout=1200),
    ]
    return result
