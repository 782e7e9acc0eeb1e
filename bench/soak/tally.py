"""The soak's book-keeping: latencies, counts, errors and the honesty checks.

Pure logic, no cluster: the worker processes fill a :class:`Tally` and
write it as JSON; the driver merges them (:func:`merge`) and summarises
(:func:`summary`).  Every answer is checked against the unique value the
call sent: a right answer is ``ok``; an answer that is not the one sent is
``wrong``; an answer missing from a call that reported success (or None
where a value was sent) is ``lost``; an answer given twice (an engine
answering twice in one call, a task id or result delivered twice) is
``doubled``.  A call that raises is an error, counted by kind.
"""
import math
from collections import Counter

#: The honesty counters; ``lost`` and ``doubled`` must stay zero.
CHECKS = ("wrong", "lost", "doubled")


def error_kind(exc):
    """A short name for what went wrong: the exception's type, with the engine
    errors inside a CompositeError (``CompositeError[EngineError]``) and the
    original name of a RemoteError."""
    inner = getattr(exc, "exceptions", None)
    if type(exc).__name__ == "CompositeError" and inner is not None:
        return f"CompositeError[{','.join(sorted({error_kind(e) for e in inner}))}]"
    return getattr(exc, "ename", None) or type(exc).__name__


class Tally:
    """What one process saw: per call kind the latencies (seconds) of the calls
    that answered, counts, errors by kind, and the honesty counters."""

    def __init__(self):
        self.latency = {}
        self.calls = Counter()
        self.errors = Counter()
        self.checks = Counter({name: 0 for name in CHECKS})
        self.ok = 0

    def call(self, kind, seconds):
        """One call of ``kind`` answered after ``seconds``."""
        self.calls[kind] += 1
        self.latency.setdefault(kind, []).append(round(seconds, 6))

    def error(self, kind, exc):
        """One call of ``kind`` raised ``exc`` (or a kind name)."""
        self.calls[kind] += 1
        name = exc if isinstance(exc, str) else error_kind(exc)
        self.errors[f"{kind}: {name}"] += 1

    def answers(self, expected, got):
        """Check the answers of one call.

        ``expected`` is a dict key -> the value sent for it (a key is an
        engine id or a task id); ``got`` a list of ``(key, value)`` pairs as
        answered.  Returns True when every answer is right.
        """
        seen = set()
        clean = True
        for key, value in got:
            if key in seen or key not in expected:
                self.checks["doubled"] += 1
                clean = False
                continue
            seen.add(key)
            if value is None and expected[key] is not None:
                self.checks["lost"] += 1
                clean = False
            elif not _same(value, expected[key]):
                self.checks["wrong"] += 1
                clean = False
            else:
                self.ok += 1
        missing = len(set(expected) - seen)
        if missing:
            self.checks["lost"] += missing
            clean = False
        return clean

    def to_json(self):
        return {"latency": self.latency, "calls": dict(self.calls),
                "errors": dict(self.errors), "checks": dict(self.checks), "ok": self.ok}


def _same(value, sent):
    if getattr(value, "shape", None) != getattr(sent, "shape", None):
        return False
    try:
        result = value == sent
        return bool(result.all()) if hasattr(result, "all") else bool(result)
    except (TypeError, ValueError):
        return False


def merge(parts):
    """One tally dict (as :meth:`Tally.to_json`) from several."""
    out = Tally().to_json()
    for part in parts:
        for kind, values in part.get("latency", {}).items():
            out["latency"].setdefault(kind, []).extend(values)
        for field in ("calls", "errors", "checks"):
            for key, n in part.get(field, {}).items():
                out[field][key] = out[field].get(key, 0) + n
        out["ok"] += part.get("ok", 0)
    return out


def percentile(values, q):
    """The ``q``-th percentile (0-100, nearest rank) of ``values``; None if empty."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


def latency_table(merged):
    """``{kind: {"calls", "answered", "p50_ms", "p99_ms"}}`` of a merged tally."""
    rows = {}
    for kind in sorted(merged["calls"]):
        values = merged["latency"].get(kind, [])
        rows[kind] = {"calls": merged["calls"][kind], "answered": len(values),
                      "p50_ms": _ms(percentile(values, 50)), "p99_ms": _ms(percentile(values, 99))}
    return rows


def _ms(seconds):
    return None if seconds is None else round(seconds * 1000, 3)
