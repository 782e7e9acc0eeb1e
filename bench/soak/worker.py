"""The soak's load, one process each: ``python -m bench.soak.worker ROLE ...``.

Roles:

* ``client``: loops over small multi-engine calls on a few engines at a
  time -- execute, push/pull of a small value and of a ~1 MB array, apply on
  one engine, a direct map -- each carrying unique values it checks in the
  answers;
* ``submitter``: submits MapTasks returning their unique argument, in
  batches (``run_many``) and one by one, and checks each task id comes back
  once with its own value;
* ``dask-submitter``: the same task load on a dask scheduler.

Each runs until ``--seconds`` have passed (every call bounded by
``--call-timeout``) and writes its :class:`~bench.soak.tally.Tally` to
``--out`` as JSON, also when stopped by SIGTERM or Ctrl-C.
"""
import argparse
import json
import random
import signal
import sys
import time

from bench.soak.tally import Tally

#: Engines a multi-engine call goes to (at most).
FANOUT = 4
#: Elements of the ~1 MB float64 array pushed and pulled.
BIG = 131072
#: Tasks per batch, and tasks submitted one by one between two batches.
BATCH = 40
SINGLES = 5
#: Pause after a failed call that could not even list the engines.
BACKOFF = 0.2

# Shipped to engines by value (see bench/payloads.py for why in __main__).
_namespace = {"__name__": "__main__"}
exec(compile('def echo(x):\n    """Return the argument."""\n    return x\n',
             "<bench.soak.worker>", "exec"), _namespace)
echo = _namespace["echo"]


class Tokens:
    """Unique numbers: worker ``index`` times 10**9 plus a counter (exact as floats)."""

    def __init__(self, index):
        self.next = index * 10 ** 9

    def __call__(self):
        self.next += 1
        return self.next


def timed(tally, kind, call):
    """``call()`` recorded as ``kind``: its latency, or its error; returns
    ``(True, result)`` or ``(False, the exception)``."""
    started = time.monotonic()
    try:
        result = call()
    except Exception as exc:  # noqa: B902 - every failure is counted, by kind
        tally.error(kind, exc)
        return False, exc
    tally.call(kind, time.monotonic() - started)
    return True, result


def check(tally, ok, outcome, expected, pairs, value=lambda v: v):
    """Check the answers of a call that returned ``outcome``: ``pairs(outcome)``
    gives its ``(engine id, raw answer)`` pairs.  When it raised a
    CompositeError instead, the answers it carries of the engines that did
    not fail (``successes``, where the client keeps them) are checked too."""
    if ok:
        return tally.answers(expected, [(k, value(v)) for k, v in pairs(outcome)])
    successes = getattr(outcome, "successes", None)
    if isinstance(successes, dict) and successes:
        tally.answers({k: v for k, v in expected.items() if k in successes},
                      [(k, value(v)) for k, v in successes.items()])
    return False


def _stdout(result):
    return result.get("stdout", "").strip() if isinstance(result, dict) else result


# -- the multi-engine client ------------------------------------------------------------

def client_loop(args, tally, deadline, closing):
    import numpy

    from ipkernel.client import MultiEngineClient

    rng = random.Random(args.seed)
    token = Tokens(args.index)
    mec = MultiEngineClient(args.mec_furl, timeout=args.call_timeout, progress=False)
    small, big, var = f"soak_s{args.index}", f"soak_b{args.index}", f"soak_e{args.index}"
    try:
        while time.monotonic() < deadline:
            ok, ids = timed(tally, "get_ids", mec.get_ids)
            if ok and not ids:
                tally.errors["get_ids: no engine registered"] += 1
            if not ok or not ids:
                time.sleep(BACKOFF)
                continue
            targets = rng.sample(ids, min(FANOUT, len(ids)))

            t = token()
            ok, out = timed(tally, "execute", lambda: mec.execute(
                f"{var} = {t}\nprint({var})", targets=targets))
            check(tally, ok, out, {e: str(t) for e in targets},
                  lambda results: [(r.get("id"), r) for r in results], _stdout)

            for kind, name, make in (("small", small, lambda v: v),
                                     ("1MB", big, lambda v: numpy.full(BIG, float(v)))):
                t = token()
                sent = make(t)
                ok, _ = timed(tally, f"push_{kind}", lambda: mec.push({name: sent},
                                                                      targets=targets))
                if ok:
                    ok, out = timed(tally, f"pull_{kind}", lambda: mec.pull(name, targets=targets))
                    check(tally, ok, out, {e: sent for e in targets},
                          lambda values: zip(targets, values))

            one, t = rng.choice(ids), token()
            ok, out = timed(tally, "apply", lambda: mec.apply(echo, (t,), targets=one))
            check(tally, ok, out, {one: t}, lambda values: zip([one], values))

            sent = [token() for _ in range(2 * len(targets))]
            ok, out = timed(tally, "map", lambda: mec.map(echo, sent, targets=targets))
            if ok:  # (a failed map's partial answers are per engine, not per item)
                tally.answers(dict(enumerate(sent)), list(enumerate(out)))
    finally:
        closing.append(mec.close)   # after the report (see main)


# -- the task submitters ----------------------------------------------------------------

class TaskBook:
    """The ids and values of the submitted tasks, and what came back for them."""

    def __init__(self, tally):
        self.tally = tally
        self.sent = {}        # task id -> value
        self.pending = set()  # task ids without an outcome yet
        self.values_back = set()
        self.outcomes = {"completed": 0, "failed": 0}
        self.began = self.ended = None  # of the submitting, time.monotonic()

    def submitted(self, ids, values):
        if len(ids) != len(values):
            self.tally.checks["lost"] += max(0, len(values) - len(ids))
        for taskid, value in zip(ids, values):
            if taskid in self.sent:  # an id handed out twice
                self.tally.checks["doubled"] += 1
                continue
            self.sent[taskid] = value
            self.pending.add(taskid)

    def outcome(self, kind, taskid, success, result):
        if taskid not in self.pending:
            self.tally.checks["doubled"] += 1
            return
        self.pending.discard(taskid)
        if not success:
            self.outcomes["failed"] += 1
            self.tally.errors[f"{kind}: {_task_error(result)}"] += 1
            return
        self.outcomes["completed"] += 1
        if result in self.values_back:
            self.tally.checks["doubled"] += 1
            return
        self.values_back.add(result)
        self.tally.answers({taskid: self.sent[taskid]}, [(taskid, result)])

    def to_json(self):
        active = (self.ended or time.monotonic()) - self.began if self.began else 0
        return dict(self.outcomes, submitted=len(self.sent), unfinished=len(self.pending),
                    active_seconds=round(active, 3))


def _task_error(result):
    from bench.soak.tally import error_kind
    if isinstance(result, str):
        return result
    return error_kind(result) if isinstance(result, BaseException) else type(result).__name__


class IpkernelTasks:
    """The task farm through the blocking TaskClient."""

    def __init__(self, args):
        from ipkernel.client import TaskClient
        from ipkernel.task import MapTask

        self.task = lambda v: MapTask(echo, (v,))
        self.tc = TaskClient(args.tc_furl, timeout=args.call_timeout, progress=False)

    def submit(self, values):
        return list(self.tc.run_many([self.task(v) for v in values]))

    def collect(self, ids):
        return list(zip(ids, self.tc.get_task_results(list(ids), block=True)))

    def close(self):
        self.tc.close()


class DaskTasks:
    """The same on dask: submit/map with pure=False, futures kept by key."""

    def __init__(self, args):
        import distributed

        self.timeout = args.call_timeout
        self.client = distributed.Client(args.scheduler, timeout=args.call_timeout)
        self.futures = {}

    def submit(self, values):
        futures = self.client.map(echo, values, pure=False)
        for future in futures:
            self.futures[future.key] = future
        return [f.key for f in futures]

    def collect(self, ids):
        import distributed

        futures = [self.futures[i] for i in ids]
        distributed.wait(futures, timeout=self.timeout)
        finished = [f for f in futures if f.status == "finished"]
        values = dict(zip([f.key for f in finished], self.client.gather(finished)))
        out = []
        for key, future in zip(ids, futures):
            del self.futures[key]
            if key in values:
                out.append((key, (True, values[key])))
                continue
            try:
                error = future.exception(timeout=self.timeout)
            except Exception as exc:  # noqa: B902 - cancelled or lost: that is the error
                error = exc
            out.append((key, (False, error if error is not None
                                     else f"future {future.status}")))
        return out

    def close(self):
        self.client.close()


def submitter_loop(args, book, deadline, farm, closing):
    tally, token = book.tally, Tokens(args.index)

    def round_trip(kind, count):
        values = [token() for _ in range(count)]

        def call():
            ids = farm.submit(values)
            book.submitted(ids, values)
            return farm.collect(ids)
        ok, outcomes = timed(tally, kind, call)
        for taskid, (success, result) in outcomes if ok else ():
            book.outcome(kind, taskid, success, result)

    try:
        book.began = time.monotonic()
        while time.monotonic() < deadline:
            round_trip("task_batch", BATCH)
            for _ in range(SINGLES):
                round_trip("task_single", 1)
        book.ended = time.monotonic()
        if book.pending:  # what timed out: one last bounded wait for it
            timed(tally, "final_collect", lambda: [
                book.outcome("final_collect", i, s, r)
                for i, (s, r) in farm.collect(sorted(book.pending, key=str))])
    finally:
        closing.append(farm.close)   # after the report (see main)


# -- the process ----------------------------------------------------------------------

def parse_args(argv=None):
    parser = argparse.ArgumentParser(prog="python -m bench.soak.worker")
    parser.add_argument("role", choices=["client", "submitter", "dask-submitter"])
    parser.add_argument("--index", type=int, required=True)
    parser.add_argument("--seconds", type=float, required=True)
    parser.add_argument("--call-timeout", type=float, default=30.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", required=True)
    parser.add_argument("--mec-furl")
    parser.add_argument("--tc-furl")
    parser.add_argument("--scheduler")
    return parser.parse_args(argv)


def _on_sigterm(signum, frame):
    raise SystemExit(128 + signum)


def main(argv=None):
    args = parse_args(argv)
    tally = Tally()
    book = TaskBook(tally) if args.role != "client" else None
    deadline = time.monotonic() + args.seconds
    # Clients are closed after the report is written: closing one whose call a
    # SIGTERM cut short can take longer than the soak waits before SIGKILL.
    closing = []
    signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        print(f"soak {args.role} {args.index} started", flush=True)  # from here it reports
        if args.role == "client":
            client_loop(args, tally, deadline, closing)
        else:
            farm = IpkernelTasks(args) if args.role == "submitter" else DaskTasks(args)
            submitter_loop(args, book, deadline, farm, closing)
    except (KeyboardInterrupt, SystemExit):
        tally.errors["stopped before the end"] += 1
    except Exception as exc:  # noqa: B902 - reported, not hidden
        tally.error("worker", exc)
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)   # a late SIGTERM must not cut the report
        with open(args.out, "w") as f:
            json.dump(dict(tally.to_json(), role=args.role, index=args.index,
                           tasks=book.to_json() if book else None), f)
        for close in closing:
            try:
                close()
            except Exception:  # noqa: B902 - the report is written; nothing to add
                pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
