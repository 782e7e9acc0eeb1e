"""Tasks and results as plain, storable data (for :mod:`ipkernel.task.store`).

Only tasks that came over the wire (:class:`ipkernel.task.fc.WireTask`) and
their results can be stored: their bodies and values are Serialized frames
and ErrorRecords the controller never opens.  Tasks submitted in process
hold live Python objects; they are kept in memory only.
"""
from twisted.python.failure import Failure

from ipkernel import wire
from ipkernel.serialize import Serialized


def _fc():
    from ipkernel.task import fc  # late: fc imports this package
    return fc


#: The key of a stored spec (never of a client's) that lists the engines
#: lost while running the task (None for one lost with a stopped controller).
LOST_ON = "lost_on"


def task_to_plain(task, lost_on=()):
    """A storable spec for ``task``, or None when it cannot be stored.

    ``lost_on``: the ids of the engines lost while running it, kept with it."""
    fc = _fc()
    if type(task) is not fc.WireTask:
        return None
    recovery = None
    if task.recovery_task is not None:
        recovery = task_to_plain(task.recovery_task)
        if recovery is None:
            return None
    spec = {"kind": task.kind, "retries": task.retries, "clear_before": task.clear_before,
            "clear_after": task.clear_after,
            "after": None if task.after is None else (task.after[0], list(task.after[1])),
            "recovery": recovery, "body": dict(task.body)}
    if lost_on:
        spec[LOST_ON] = list(lost_on)
    return spec


def task_from_plain(spec):
    """The WireTask a stored spec describes."""
    if LOST_ON in spec:
        spec = {k: v for k, v in spec.items() if k != LOST_ON}
    return _fc().WireTask(spec)


def lost_engines(spec):
    """The engines lost while running the task of stored ``spec`` (a list)."""
    return list(spec.get(LOST_ON) or ())


def result_to_plain(success, value):
    """A storable form of a finished task's ``(success, value)``, or None."""
    fc = _fc()
    if isinstance(value, fc.WireResult):
        return {"k": "string", "payload": value.payload, "failure": value.failure,
                "engineid": value.engineid, "taskid": value.taskid,
                "submitted": value.submitted, "completed": value.completed,
                "duration": value.duration}
    if not success and isinstance(value, Failure):
        return {"k": "error",
                "record": wire.record_from_exception(value.value, include_exception=False)}
    if success and isinstance(value, Serialized):
        return {"k": "map", "value": value}
    return None


def result_from_plain(data):
    """``(success, value)`` back from :func:`result_to_plain`'s output."""
    kind = data["k"]
    if kind == "map":
        return True, data["value"]
    if kind == "error":
        return False, Failure(wire.WireError(data["record"]))
    tr = _fc().WireResult(data["payload"], data["engineid"], failure=data["failure"])
    tr.taskid = data["taskid"]
    tr.submitted, tr.completed, tr.duration = data["submitted"], data["completed"], data["duration"]
    return True, tr
