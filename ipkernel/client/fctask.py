"""FCTaskClient: the task farm of a controller, over Foolscap (Deferred API).

Tasks are turned into specs here (see :mod:`ipkernel.task.fc`): the plain
fields the controller schedules by, plus a body of Serialized frames that
only an engine opens.  Results are opened here, in the client.
"""
import functools

from twisted.internet import defer
from twisted.python.failure import Failure
from ipkernel import framing, mapping, serialize, wire
from ipkernel.engine.taskbody import CaptureOutput, Captured, DependGate, string_task, uncaptured
from ipkernel.interfaces.task import ITask
from ipkernel.task.tasks import MapTask, StringTask, TaskResult


def task_spec(task):
    """The wire form of ``task`` (a StringTask or MapTask)."""
    if isinstance(task, StringTask):
        kind = "string"
        body = {"func": serialize.serialize(CaptureOutput(string_task)),
                "args": serialize.serialize((task.push, task.expression, task.pull)),
                "kwargs": serialize.serialize({})}
    elif isinstance(task, MapTask):
        kind = "map"
        body = {"func": serialize.serialize(CaptureOutput(task._function)),
                "args": serialize.serialize(task.args),
                "kwargs": serialize.serialize(task.kwargs)}
    else:
        raise TypeError(f"run takes a StringTask or a MapTask, not {type(task).__name__}")
    if task.depend is not None:
        body["depend"] = serialize.serialize(DependGate(task.depend))
    return {"kind": kind, "retries": task.retries, "clear_before": task.clear_before,
            "clear_after": task.clear_after,
            "after": None if task.after is None else (task.after[0], list(task.after[1])),
            "recovery": None if task.recovery_task is None else task_spec(task.recovery_task),
            "body": body}


def _opened(payload, on_output=None):
    """A task's value from its Serialized ``payload``, and what it printed
    (given to ``on_output(engine_id, stdout, stderr)`` when there is some)."""
    value = serialize.unserialize(payload)
    if isinstance(value, Captured) and on_output is not None:
        on_output(value.engine_id, value.stdout, value.stderr)
    return uncaptured(value)[0]


def open_result(outcome, on_output=None):
    """Turn a wire result into the task's result (raising its error); what
    a MapTask printed goes to ``on_output(engine_id, stdout, stderr)``, what
    a StringTask printed to its TaskResult's ``stdout``/``stderr``."""
    outcome = wire.raise_if_error(outcome)
    if outcome is None:
        return None
    if outcome[0] == "map":
        return _opened(outcome[1], on_output)
    _, ok, payload, meta = outcome
    if ok:
        results, stdout, stderr = uncaptured(serialize.unserialize(payload))
        tr = TaskResult(results, meta["engineid"])
        tr.stdout, tr.stderr = stdout, stderr
    else:
        exc = wire.exception_from_record(payload)
        tr = TaskResult({}, meta["engineid"], failure=Failure(exc))
        tr.stdout = getattr(exc, "_ipkernel_stdout", "")
        tr.stderr = getattr(exc, "_ipkernel_stderr", "")
    tr.taskid = meta["taskid"]
    tr.submitted, tr.completed, tr.duration = meta["submitted"], meta["completed"], meta["duration"]
    return tr


def _template_key(spec):
    body = spec["body"]
    frames = tuple(b"".join(bytes(f) for f in body[k].frames) if k in body else None
                   for k in ("func", "kwargs", "depend"))
    after = spec["after"] and (spec["after"][0], tuple(spec["after"][1]))
    recovery = spec["recovery"] and id(spec["recovery"])
    return (spec["kind"], spec["retries"], spec["clear_before"], spec["clear_after"],
            after, recovery) + frames


def _template_of(spec):
    """``spec`` without its args: what tasks differing only in args share."""
    return dict(spec, body={k: v for k, v in spec["body"].items() if k != "args"})


def specs_to_wire(specs):
    """``(templates, refs, args)`` of ``RITaskController.run_many`` for full
    task specs: tasks that differ only in their args share a template."""
    templates, index, refs, args = [], {}, [], []
    for spec in specs:
        key = _template_key(spec)
        if key not in index:
            index[key] = len(templates)
            templates.append(_template_of(spec))
        refs.append(index[key])
        args.append(spec["body"]["args"])
    return templates, framing.pack_ints(refs), framing.pack(args)


def results_from_wire(outcome, count, on_output=None):
    """The ``(ok, value)`` pairs of a ``get_task_results`` answer (what the
    tasks printed goes to ``on_output``, see :func:`open_result`)."""
    indexes, values, others = outcome
    pairs = [None] * count
    for k, value in zip(framing.unpack_ints(indexes), framing.unpack(values)):
        pairs[k] = (True, _opened(value, on_output))
    rest = iter(others)
    for k in range(count):
        if pairs[k] is None:
            pairs[k] = open_pair(next(rest), on_output)
    return pairs


def open_pair(outcome, on_output=None):
    """``(True, result)`` or ``(False, exception)`` for one wire outcome."""
    try:
        return True, open_result(outcome, on_output)
    except Exception as exc:
        return False, exc


#: Tasks per ``run_many`` / ``get_task_results`` call made by a map.
CHUNK = 1000


def _chunks(items):
    return [items[i:i + CHUNK] for i in range(0, len(items), CHUNK)]


def _ids(taskids):
    return [taskids] if isinstance(taskids, int) else list(taskids)


class FCTaskClient:
    """The task methods of ITaskController over an RITaskController reference.

    Every method returns a Deferred.  ``map``, ``mapper`` and ``parallel``
    run a function over sequences as one MapTask per element.
    """

    client_name = "ipkernel.client.fctask.FCTaskClient"

    def __init__(self, remote_reference, furl=None):
        self.remote_reference = remote_reference
        self.furl = furl
        #: ``on_output(engine_id, stdout, stderr)``: called (reactor thread)
        #: with what a MapTask printed when its result is fetched (None: dropped).
        self.on_output = None

    def __repr__(self):
        from ipkernel.fcutil import redacted_furl

        return f"<{type(self).__name__} {redacted_furl(self.furl) or '?'}>"

    def close(self):
        """Close the lane, if any (the Foolscap connection belongs to the Tub)."""
        close_lane = getattr(self.remote_reference, "close_lane", None)
        if close_lane is not None:
            close_lane()

    def _call(self, method, *args):
        d = self.remote_reference.callRemote(method, *args)
        return d.addCallback(wire.raise_if_error)

    def run(self, task):
        """Submit ``task``; a Deferred firing with its task id."""
        try:
            if not ITask.providedBy(task):
                hint = (f"; for source text write run(StringTask({task[:40]!r}))"
                        if isinstance(task, str) else
                        "; for a function write run(MapTask(func, args))" if callable(task)
                        else "")
                raise TypeError(f"run takes a task (a StringTask or a MapTask), not "
                                f"{type(task).__name__}{hint}")
            spec = task_spec(task)
        except Exception:
            return defer.fail()
        return self._call("run", spec)

    def run_many(self, tasks):
        """Submit a list of tasks in one call; a Deferred firing with their ids.

        If one task is refused none is submitted (the error names which)."""
        try:
            specs = [task_spec(t) if ITask.providedBy(t) else _not_a_task(k, t)
                     for k, t in enumerate(tasks)]
            payload = specs_to_wire(specs)
        except Exception:
            return defer.fail()
        return self._call("run_many", *payload)

    def _run_template(self, template, args):
        """Submit one task per Serialized args, all from ``template``."""
        return self._call("run_many", [template], framing.pack_ints([0] * len(args)),
                          framing.pack(args))

    def get_task_results(self, taskids, block=False):
        """One ``(True, result)`` or ``(False, exception)`` pair per task id, in order
        (``(True, None)`` for an unfinished task unless ``block``)."""
        try:
            ids = [_check_taskid(i) for i in taskids]
        except Exception:
            return defer.fail()
        d = self.remote_reference.callRemote("get_task_results", ids, bool(block))
        return d.addCallback(wire.raise_if_error).addCallback(results_from_wire, len(ids),
                                                              self.on_output)

    def get_task_result(self, taskid, block=False):
        """The task's result (None while unfinished, unless ``block``)."""
        try:
            _check_taskid(taskid)
        except TypeError:
            return defer.fail()
        d = self.remote_reference.callRemote("get_task_result", taskid, bool(block))
        return d.addCallback(open_result, self.on_output)

    def abort(self, taskid):
        """Abort a queued or running task (IndexError if it already finished)."""
        try:
            _check_taskid(taskid)
        except TypeError:
            return defer.fail()
        return self._call("abort", taskid)

    def barrier(self, taskids):
        """Fire when all ``taskids`` have finished (successfully or not)."""
        return self._call("barrier", _ids(taskids))

    def spin(self):
        """Make the controller look for work it can start now."""
        return self._call("spin")

    def queue_status(self, verbose=False):
        """Counts (or, with ``verbose``, ids) of pending/scheduled/succeeded/failed tasks."""
        return self._call("queue_status", bool(verbose))

    def clear(self, taskids=None):
        """Forget finished results (all of them, or ``taskids``)."""
        if taskids is None:
            return self._call("clear", [], True)
        return self._call("clear", _ids(taskids), False)

    def map(self, func, *sequences):
        """``[func(*args) ...]`` as load-balanced tasks, in order."""
        return self.mapper().map(func, *sequences)

    def mapper(self, clear_before=False, clear_after=False, retries=0, recovery_task=None,
               depend=None, block=True):
        """A :class:`TaskMapper` with these task options."""
        return TaskMapper(self, clear_before=clear_before, clear_after=clear_after,
                          retries=retries, recovery_task=recovery_task, depend=depend,
                          block=block)

    def parallel(self, clear_before=False, clear_after=False, retries=0, recovery_task=None,
                 depend=None, block=True):
        """A decorator: calling the function maps it over its arguments."""
        mapper = self.mapper(clear_before, clear_after, retries, recovery_task, depend, block)

        def decorate(func):
            return ParallelFunction(func, mapper)
        return decorate

    def adapt_to_blocking_client(self, *, timeout=None, progress=True):
        """A blocking :class:`ipkernel.client.TaskClient` over this client: the
        same connection to the same controller (no new one is made).

        It may be made in any thread, the reactor's included, but its calls
        block their thread until the reactor has done them, so they must be
        made from a thread other than the reactor's (from the reactor thread
        they raise :class:`~ipkernel.client.ReactorThreadError`):

        * a script whose reactor runs in the blocking clients' background
          thread (:func:`ipkernel.client.reactor.blocking_call`) calls it
          from its own thread, as IPython 0.10's ``client.get_task_client``
          did;
        * a Twisted program makes the calls from a worker thread
          (``twisted.internet.threads.deferToThread``).

        Closing the blocking client leaves this one open; neither reconnects
        for the other.  ``timeout`` and ``progress`` are those of
        :class:`~ipkernel.client.TaskClient`.
        """
        from ipkernel.client.blocking_task import TaskClient

        return TaskClient._over(self, timeout=timeout, progress=progress)


def _not_a_task(k, value):
    raise TypeError(f"task {k} of the list is not a task but a {type(value).__name__}")


def _check_taskid(taskid):
    if isinstance(taskid, bool) or not isinstance(taskid, int):
        raise TypeError(f"a task id is an int, not {taskid!r}")
    return taskid


class TaskMapper:
    """Maps a function over sequences with one MapTask per element.

    ``block=True``: ``map`` fires with the results in order (the first
    failure's exception is raised); ``block=False``: with the task ids.
    """

    def __init__(self, task_controller, clear_before=False, clear_after=False, retries=0,
                 recovery_task=None, depend=None, block=True):
        self.task_controller = task_controller
        self.clear_before = clear_before
        self.clear_after = clear_after
        self.retries = retries
        self.recovery_task = recovery_task
        self.depend = depend
        self.block = block

    def map(self, func, *sequences, progress=None):
        """Fire with ``[func(*args) for args in zip(*sequences)]`` (``block``),
        or with the task ids.  Sequences of different lengths fail with
        ValueError before any task is submitted.  ``progress(n)``, if given, is called as ``n``
        more results have arrived."""
        return defer.ensureDeferred(self._map(func, sequences, progress))

    def _template_and_args(self, func, sequences):
        """One task template and each item's Serialized args: the function is
        serialized once for all."""
        options = dict(clear_before=self.clear_before, clear_after=self.clear_after,
                       retries=self.retries, recovery_task=self.recovery_task,
                       depend=self.depend)
        template = _template_of(task_spec(MapTask(func, **options)))
        try:
            return template, [serialize.serialize(args) for args in zip(*sequences, strict=True)]
        except ValueError as exc:
            if "zip()" not in str(exc):
                raise
            raise ValueError("the sequences to map over have different lengths "
                             f"({exc}); no task was submitted") from None

    async def _map(self, func, sequences, progress):
        template, args = self._template_and_args(func, mapping.as_sequences(sequences))
        id_chunks = await _gather([self.task_controller._run_template(template, chunk)
                                   for chunk in _chunks(args)])
        ids = [i for chunk in id_chunks for i in chunk]
        if not self.block:
            return ids

        def fetched(pairs):
            if progress is not None:
                progress(len(pairs))
            return pairs
        result_chunks = await _gather([
            self.task_controller.get_task_results(chunk, block=True).addCallback(fetched)
            for chunk in _chunks(ids)])
        out = []
        for chunk in result_chunks:
            for ok, value in chunk:
                if not ok:
                    raise value
                out.append(value)
        return out


async def _gather(ds):
    """The results of ``ds`` in order; the first failure (in order) is raised."""
    results = await defer.DeferredList(ds, consumeErrors=True)
    for ok, value in results:
        if not ok:
            value.raiseException()
    return [value for _, value in results]


class ParallelFunction:
    """A function whose call maps it, through a TaskMapper, over its arguments."""

    def __init__(self, func, mapper):
        # the name and doc of ``func``; not its __dict__ (a callable object's
        # attributes could hide ours)
        functools.update_wrapper(self, func, updated=())
        self.func = func
        self.mapper = mapper

    def __call__(self, *sequences):
        return self.mapper.map(self.func, *sequences)
