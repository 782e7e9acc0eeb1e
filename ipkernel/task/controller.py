"""TaskController: the load-balanced, fault-tolerant task farm of a controller."""
from collections import deque

from twisted.internet import defer
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from ipkernel.controller.service import ControllerAdapterBase
from ipkernel.engine.queued import PIPELINE_DEPTH, independent
from ipkernel.error import (ResultEvicted, TaskAborted, TaskKilledEngines, TaskRejectError,
                            TaskTimeout)
from ipkernel.interfaces.task import ITask, ITaskController, IWorker
from ipkernel.memtrim import release_memory
from ipkernel.task import persist
from ipkernel.task.results import IdSet, ResultTable
from ipkernel.task.schedulers import FIFOScheduler, LIFOScheduler
from ipkernel.task.store import MemoryTaskStore
from ipkernel.task.tasks import TaskResult

log = Logger()

SCHEDULERS = {"fifo": FIFOScheduler, "lifo": LIFOScheduler}
#: A clear that drops this many results gives the memory back to the system.
RELEASE_AFTER = 1000


@implementer(IWorker)
class WorkerFromQueuedEngine:
    """Runs tasks on one queued engine, alone or as a batch.

    Keeps a running mean of how long its tasks take on the engine; the
    controller batches and pipelines only tasks known to be short.
    """

    #: Weight of the newest duration in the running mean.
    SMOOTHING = 0.2

    def __init__(self, engine):
        self.engine = engine
        self.workerid = engine.id
        self.mean_duration = None
        self.in_flight = 0   # runs started and not finished
        self.idle_slots = 0  # entries of this worker in the scheduler's idle queue
        self.spare = False   # a pipelined slot waits in the controller's spare queue

    def run(self, task):
        # Tasks stand alone on the engine's queue: a failing task must not
        # clear other commands, nor a multi-engine user's failure clear tasks.
        token = independent.set(True)
        try:
            return task.run_on(self.engine)
        finally:
            independent.reset(token)

    def run_batch(self, tasks):
        """Run ``tasks`` (all batchable) as one ``apply_batch``; fire with one
        ``(success, result)`` per task, or ``(None, None)`` for a task the
        engine did not run."""
        token = independent.set(True)
        try:
            d = self.engine.apply_batch([task.call() for task in tasks])
        finally:
            independent.reset(token)
        return d.addCallbacks(self._batch_outcomes, self._batch_failed, callbackArgs=(tasks,),
                              errbackArgs=(tasks,))

    def _batch_outcomes(self, outcomes, tasks):
        out = []
        for task, (ok, value, started, finished) in zip(tasks, outcomes):
            if ok is None:
                out.append((None, None))
            else:
                out.append(task.batch_outcome(self.workerid, ok, value, started, finished))
        return out

    @staticmethod
    def _batch_failed(failure, tasks):
        return [(False, failure)] * len(tasks)

    def note_duration(self, seconds):
        if seconds is None:
            return
        if self.mean_duration is None:
            self.mean_duration = seconds
        else:
            self.mean_duration += self.SMOOTHING * (seconds - self.mean_duration)


_NO_ENGINES = frozenset()


class _Record:
    """What the controller knows of one unfinished task id.

    Slots, and no containers until they are needed: a bulk submission keeps
    one record per task alive, and small objects that outlive nothing keep
    CPython's arenas from being given back.
    """

    __slots__ = ("task", "state", "waiters", "rejected", "lost_on", "rejects", "timer")

    def __init__(self, task):
        self.task = task
        self.state = "waiting"  # waiting (for `after`), queued, running
        self.waiters = None  # Deferreds and _Barriers waiting for the result
        self.rejected = _NO_ENGINES  # ids of the engines that rejected the task
        self.lost_on = ()  # ids of the engines lost while running it (None: unknown)
        self.rejects = 0
        self.timer = None

    def wait(self, waiter):
        """Call ``waiter`` (a Deferred or a _Barrier) back when the task finishes."""
        if self.waiters is None:
            self.waiters = []
        self.waiters.append(waiter)

    @property
    def losses(self):
        """How many engines were lost while running the task."""
        return len(self.lost_on)

    def lose(self, engine_id):
        """An engine running the task was lost; return how many were."""
        self.lost_on = (*self.lost_on, engine_id)
        return len(self.lost_on)

    def reject(self, engine_id):
        if not self.rejected:
            self.rejected = set()
        self.rejected.add(engine_id)


class _Barrier:
    """One ``barrier`` call: ``deferred`` fires once ``pending`` tasks finished
    (a single Deferred however many tasks it waits for)."""

    __slots__ = ("pending", "deferred")

    def __init__(self, pending):
        self.pending = pending
        self.deferred = defer.Deferred()

    def task_done(self):
        self.pending -= 1
        if self.pending == 0:
            self.deferred.callback(None)


def loss_count(text):
    """``--task-max-engine-losses``'s value: an int >= 0 (argparse type)."""
    import argparse
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected a number of losses >= 0, not {text!r}")
    return value


def _check_id(taskid):
    if isinstance(taskid, bool) or not isinstance(taskid, int):
        raise TypeError(f"a task id is an int, not {taskid!r}")


def _is_failure(success, value):
    return not success or (isinstance(value, TaskResult) and value.failure is not None)


@implementer(ITaskController)
class TaskController(ControllerAdapterBase):
    """Adapter IControllerBase -> ITaskController.

    ``scheduler``: 'fifo' (default), 'lifo' or an IScheduler class.
    ``timeout``: seconds a task every registered engine rejected waits for a
    new engine before failing with TaskTimeout.  ``max_results``: finished
    results kept (older ones are evicted: ResultEvicted).
    ``max_engine_losses``: how many times a task whose engine was lost while
    running it is queued again (default 3, like dask's allowed failures);
    one more loss fails it with TaskKilledEngines.  Independent of the
    task's ``retries``, which count failures of its own code.  ``max_rejects``: bound on TaskRejectError re-routings.
    ``batch_time``: seconds of engine work a batch of small tasks aims at.
    Once an engine's tasks are known to take less than that, it gets queued
    tasks in batches (one round trip for many tasks; at most ``max_batch``,
    and never more than its share of the queue) and a second batch is sent
    while the first runs.  Longer tasks go one at a time, so a slow task
    never holds back others that a free engine could run.
    ``failure_penalty``: seconds an engine whose task failed waits before it
    gets more work (0.10's ``failurePenalty``, for engines that may be
    dying).  The default is 0: heartbeats find dying engines, and a task's
    own exception says nothing about its engine.
    ``clock``: an IReactorTime (tests inject a Clock).
    ``store``: where tasks and results are kept (:mod:`ipkernel.task.store`;
    default a MemoryTaskStore).  With a persistent store, ids continue after
    a restart, tasks that were queued or running are queued again (a running
    one counts as an engine loss) and finished results are served again.
    """

    def __init__(self, controller, scheduler="fifo", timeout=30.0, max_results=100_000,
                 max_engine_losses=3, max_rejects=1000, clock=None, store=None,
                 batch_time=0.05, max_batch=256, failure_penalty=0.0):
        if (isinstance(max_engine_losses, bool) or not isinstance(max_engine_losses, int)
                or max_engine_losses < 0):
            raise ValueError(f"max_engine_losses must be an int >= 0, not {max_engine_losses!r}")
        super().__init__(controller)
        if clock is None:
            from twisted.internet import reactor as clock
        cls = SCHEDULERS[scheduler] if isinstance(scheduler, str) else scheduler
        self.scheduler = cls()
        self.timeout = timeout
        self.max_results = max_results
        self.max_engine_losses = max_engine_losses
        self.max_rejects = max_rejects
        self.batch_time = batch_time
        self.max_batch = max_batch
        self.failure_penalty = failure_penalty
        self._penalties = {}
        self.clock = clock
        self._next_id = 0
        self._live = {}
        self._running = 0   # records of _live in state "running" (counts() reads it)
        self._results = ResultTable()
        self._evicted = IdSet()
        self._dependents = {}
        self._workers = {}
        self._spare = deque()
        self._rejected_queued = set()
        #: Tasks finished since the controller started: {"succeeded": n, "failed": n}.
        self.finished_counts = {"succeeded": 0, "failed": 0}
        #: Called ``f(taskid, engine_id, failure)`` when a task fails (the dashboard).
        self.failure_listeners = []
        self.store = MemoryTaskStore() if store is None else store
        self._load()
        controller.on_register_engine_do(self._engine_registered, True)
        controller.on_unregister_engine_do(self._engine_unregistered, True)
        for engine_id in sorted(controller.engines):
            self._add_worker(engine_id)

    # -- persistence -------------------------------------------------------------------

    def _load(self):
        state = self.store.load()
        self._next_id = state.next_id
        self._evicted.update(state.evicted)
        for taskid, result in state.finished:
            self._results.add(taskid, *persist.result_from_plain(result))
        self._evict_over_cap()
        for taskid, state_name, spec in state.unfinished:
            task = persist.task_from_plain(spec)
            task.taskid = taskid
            rec = self._live[taskid] = _Record(task)
            rec.lost_on = tuple(persist.lost_engines(spec))
            if state_name == "running":
                rec.lose(None)  # its engine went away with the old controller
                self._save_progress(taskid, task)
        for taskid, rec in list(self._live.items()):
            if self._ready(rec.task):
                self._queue(taskid)
            else:
                for i in rec.task.after[1]:
                    self._dependents.setdefault(i, []).append(taskid)
        if state.unfinished:
            log.info("task store: {n} unfinished tasks queued again", n=len(state.unfinished))

    def _store_result(self, taskid, success, value):
        if self.store.persistent:
            self.store.finish(taskid, persist.result_to_plain(success, value))

    # -- engines ----------------------------------------------------------------

    def _add_worker(self, engine_id):
        worker = WorkerFromQueuedEngine(self.controller.engines[engine_id])
        self._workers[engine_id] = worker
        self._offer(worker)

    def _short(self, worker):
        return worker.mean_duration is not None and worker.mean_duration < self.batch_time

    def _offer(self, worker):
        """Give ``worker``'s free slots back: an engine with nothing to do is
        offered to the scheduler; a second, pipelined slot (for a worker
        whose tasks are short) waits in ``_spare`` until no engine is idle."""
        if worker.in_flight == 0 and worker.idle_slots == 0:
            worker.idle_slots = 1
            self.scheduler.add_worker(worker)
        if (self._short(worker) and not worker.spare
                and worker.in_flight + worker.idle_slots < PIPELINE_DEPTH):
            worker.spare = True
            self._spare.append(worker)

    def _use_spare_slot(self):
        """Offer one pipelined slot to the scheduler; False if there is none."""
        while self._spare:
            worker = self._spare.popleft()
            worker.spare = False
            if self._workers.get(worker.workerid) is worker and self._short(worker):
                worker.idle_slots += 1
                self.scheduler.add_worker(worker)
                return True
        return False

    def _batchable(self, task):
        # A task that was lost with an engine runs alone from then on: when an
        # engine dies under a batch, only the task that kills engines keeps
        # counting losses.
        rec = self._live.get(task.taskid)
        return task.batchable and (rec is None or not rec.lost_on)

    def _batch_size(self, worker, task):
        if not self._batchable(task) or worker.mean_duration is None:
            return 1
        share = -(-self.scheduler.ntasks // max(1, len(self._workers)))  # ceil
        by_time = int(self.batch_time / max(worker.mean_duration, 1e-6))
        return max(1, min(self.max_batch, share + 1, by_time))

    def _engine_registered(self, engine_id):
        # a new engine may reuse the id of one that rejected tasks: it has not
        for rec in self._live.values():
            if engine_id in rec.rejected:
                rec.rejected.discard(engine_id)
        self._add_worker(engine_id)
        self._distribute()

    def _engine_unregistered(self, engine_id):
        self._workers.pop(engine_id, None)
        self.scheduler.remove_worker(engine_id)
        self._check_blocked()

    def _drop_worker(self, worker):
        if self._workers.get(worker.workerid) is worker:
            del self._workers[worker.workerid]
            self.scheduler.remove_worker(worker.workerid)

    def _engine_lost(self, worker):
        return self.controller.engines.get(worker.workerid) is not worker.engine

    # -- scheduling ---------------------------------------------------------------

    def _acceptable(self, task, worker):
        rec = self._live.get(task.taskid)
        return rec is None or worker.workerid not in rec.rejected

    def _queue(self, taskid, lost=False):
        rec = self._live[taskid]
        # after an engine loss the store keeps 'running': a restart counts the loss
        if rec.state == "running" and not lost:
            self.store.set_state(taskid, "queued")
        self._set_state(rec, "queued")
        if rec.rejected:
            self._rejected_queued.add(taskid)
        self.scheduler.add_task(rec.task)

    def _distribute(self):
        started = False
        while True:
            worker, task = self.scheduler.schedule(self._acceptable)
            if worker is None:
                if self.scheduler.ntasks and self._use_spare_slot():
                    continue
                break
            started = True
            worker.idle_slots -= 1
            worker.in_flight += 1
            size = self._batch_size(worker, task)
            if size == 1:
                self._start(task)
                worker.run(task).addCallback(self._run_done, worker, task)
                continue
            tasks = [task] + self.scheduler.take(
                size - 1, lambda t: self._batchable(t) and self._acceptable(t, worker))
            for t in tasks:
                self._start(t)
            worker.run_batch(tasks).addCallback(self._batch_done, worker, tasks)
        self._check_blocked()
        return started

    def _start(self, task):
        rec = self._live[task.taskid]
        self._set_state(rec, "running")
        self.store.set_state(task.taskid, "running")
        self._rejected_queued.discard(task.taskid)
        if rec.timer is not None:
            rec.timer.cancel()
            rec.timer = None

    def _check_blocked(self):
        """Arm a TaskTimeout timer for queued tasks every engine rejected."""
        engines = set(self._workers)
        for taskid in list(self._rejected_queued):
            rec = self._live[taskid]
            blocked = not engines or engines <= rec.rejected
            if blocked and rec.timer is None:
                rec.timer = self.clock.callLater(self.timeout, self._timed_out, taskid)
            elif not blocked and rec.timer is not None:
                rec.timer.cancel()
                rec.timer = None

    def _timed_out(self, taskid):
        rec = self._live.get(taskid)
        if rec is None or rec.state != "queued":
            return
        rec.timer = None
        self.scheduler.remove_task(rec.task)
        self._finish(taskid, False, Failure(TaskTimeout(
            f"task {taskid} was rejected by every engine and no other engine took it "
            f"within {self.timeout} s")))

    def _release(self, worker, ran, failed):
        """A run of ``worker`` ended (``ran``: the tasks it ran, for their
        durations; ``failed``: one of them failed): give its slot back,
        after ``failure_penalty`` if it failed, unless its engine is gone."""
        lost = self._engine_lost(worker)
        if not lost:
            for task in ran:
                worker.note_duration(task.duration)
        worker.in_flight -= 1
        if lost:
            # The run may end before the controller tells us the engine is
            # gone: its other slots must not take the task again meanwhile.
            self._drop_worker(worker)
            return lost
        if failed and self.failure_penalty > 0:
            call = self.clock.callLater(self.failure_penalty, self._readmit, worker)
            self._penalties[call] = worker
        else:
            self._offer(worker)
        return lost

    def _readmit(self, worker):
        self._penalties = {c: w for c, w in self._penalties.items() if c.active()}
        if self._workers.get(worker.workerid) is worker:
            self._offer(worker)
            self._distribute()

    def _run_done(self, outcome, worker, task):
        lost = self._release(worker, [task], failed=not outcome[0])
        self._task_done(task, *outcome, lost=lost, worker=worker)
        self._distribute()

    def _batch_done(self, outcomes, worker, tasks):
        lost = self._release(worker, [t for t, (ok, _) in zip(tasks, outcomes) if ok is not None],
                             failed=any(ok is False for ok, _ in outcomes))
        for task, (success, result) in zip(tasks, outcomes):
            if success is None:  # interrupted before it ran: run it again
                rec = self._live.get(task.taskid)
                if rec is not None and rec.task is task:
                    self._queue(task.taskid)
                continue
            self._task_done(task, success, result, lost=lost, worker=worker)
        self._distribute()

    def _task_done(self, task, success, result, lost, worker):
        taskid = task.taskid
        rec = self._live.get(taskid)
        if rec is None or rec.task is not task:  # aborted or cleared meanwhile
            return
        if not success and lost:
            losses = rec.lose(worker.workerid)
            if losses > self.max_engine_losses:
                log.warn("task {t} lost engine {e}: its engines died {n} times while running "
                         "it; it fails", t=taskid, e=worker.workerid, n=losses)
                self._finish(taskid, False, Failure(self._killed_engines(taskid, rec)))
            else:
                log.info("task {t} lost engine {e} ({n} of at most {m} losses); rescheduling",
                         t=taskid, e=worker.workerid, n=losses, m=self.max_engine_losses)
                self._save_progress(taskid, task)
                self._queue(taskid, lost=True)
        elif not success and result.check(TaskRejectError):
            rec.reject(worker.workerid)
            rec.rejects += 1
            if rec.rejects > self.max_rejects:
                self._finish(taskid, *task.finish(False, result))
            else:
                self._queue(taskid)
        elif not success and task.retries > 0:
            task.retries -= 1
            self._save_progress(taskid, task)
            self._queue(taskid)
        elif not success and task.recovery_task is not None:
            recovery = rec.task = task.recovery_task
            recovery.taskid = taskid
            rec.rejected = _NO_ENGINES
            self._save_progress(taskid, recovery)
            self._queue(taskid)
        else:
            self._finish(taskid, *task.finish(success, result))

    def _killed_engines(self, taskid, rec):
        known = [str(e) for e in rec.lost_on if e is not None]
        parts = []
        if known:
            parts.append(f"engine{'s' if len(known) > 1 else ''} {', '.join(known)}")
        unknown = len(rec.lost_on) - len(known)
        if unknown:
            parts.append(f"{unknown} lost when the controller stopped")
        count = len(rec.lost_on)
        return TaskKilledEngines(
            f"task {taskid} was running on an engine that died or disconnected "
            f"{'once' if count == 1 else f'{count} times'} ({'; '.join(parts)}); it is not "
            f"run again (the "
            f"controller reschedules a task at most {self.max_engine_losses} times: "
            f"ipcontroller --task-max-engine-losses).  The task probably makes its engine "
            f"exit or crash: run its code on one engine with mec.execute(code, targets=ID) "
            f"(a MapTask's function with mec.apply) to see what happens")

    def _set_state(self, rec, state):
        self._running += (state == "running") - (rec.state == "running")
        rec.state = state

    def _finish(self, taskid, success, value):
        rec = self._live.pop(taskid)
        self._running -= rec.state == "running"
        if not self._live:  # a dict never shrinks: drop the tables a bulk submission grew
            self._live, self._dependents = {}, {}
        self._rejected_queued.discard(taskid)
        if rec.timer is not None:
            rec.timer.cancel()
        self._results.add(taskid, success, value)
        self._store_result(taskid, success, value)
        self._evict_over_cap()
        failed = _is_failure(success, value)
        self.finished_counts["failed" if failed else "succeeded"] += 1
        if failed and self.failure_listeners:
            self._tell_failure(taskid, value)
        for dependent in self._dependents.pop(taskid, []):
            drec = self._live.get(dependent)
            if drec is not None and drec.state == "waiting" and self._ready(drec.task):
                self._queue(dependent)
        for waiter in rec.waiters or ():  # last: waiters may call back into the controller
            if type(waiter) is _Barrier:
                waiter.task_done()
            elif success:
                waiter.callback(value)
            else:
                waiter.errback(value)

    def _tell_failure(self, taskid, value):
        engine_id = getattr(value, "engineid", None)
        failure = value.failure if isinstance(value, TaskResult) else value
        for listener in list(self.failure_listeners):
            try:
                listener(taskid, engine_id, failure)
            except Exception:
                log.failure("task failure listener {f!r} raised", f=listener)

    def counts(self):
        """``{"waiting", "running", "succeeded", "failed"}``: tasks not yet sent
        to an engine, running on one, and finished since the start (cheap)."""
        running = self._running
        return {"waiting": len(self._live) - running, "running": running,
                **self.finished_counts}

    def _evict_over_cap(self):
        evicted = []
        while len(self._results) > self.max_results:
            old = self._results.pop_oldest()
            self._evicted.add(old)
            evicted.append(old)
        if evicted:
            self.store.evict(evicted)

    def _save_progress(self, taskid, task):
        """Keep what a restart must know: retries used, the switch to the
        recovery task, the engines lost while running it."""
        if self.store.persistent:
            rec = self._live.get(taskid)
            lost_on = rec.lost_on if rec is not None else ()
            self.store.update(taskid, persist.task_to_plain(task, lost_on))

    def _finished(self, taskid):
        return 0 <= taskid < self._next_id and taskid not in self._live

    def _ready(self, task):
        if task.after is None:
            return True
        mode, ids = task.after
        done = [self._finished(i) for i in ids]
        return all(done) if mode == "all" else (any(done) or not ids)

    # -- ITaskController ---------------------------------------------------------------

    def run(self, task):
        try:
            return defer.succeed(self._run(task))
        except Exception:
            return defer.fail()

    def run_many(self, tasks):
        try:
            tasks = list(tasks)
            for k, task in enumerate(tasks):
                self._check_new(task, self._next_id + k, f"task {k} of the list: ")
            ids = [self._run(task, distribute=False, store=False) for task in tasks]
            if self.store.persistent:
                self.store.add_many([(i, persist.task_to_plain(t)) for i, t in zip(ids, tasks)])
        except Exception:
            return defer.fail()
        self._distribute()
        return defer.succeed(ids)

    def _check_new(self, task, next_id, where=""):
        if not ITask.providedBy(task):
            raise TypeError(f"{where}run takes a task (StringTask, MapTask), "
                            f"not {type(task).__name__}")
        if task.taskid is not None:
            raise ValueError(f"{where}this task object was already submitted (as task "
                             f"{task.taskid}); make a new one")
        if task.after is not None:
            unknown = [i for i in task.after[1] if not 0 <= i < next_id]
            if unknown:
                raise IndexError(f"{where}after names tasks never submitted: {unknown}")

    def _run(self, task, distribute=True, store=True):
        self._check_new(task, self._next_id)
        taskid = task.taskid = self._next_id
        self._next_id += 1
        if store and self.store.persistent:
            self.store.add(taskid, persist.task_to_plain(task))
        self._live[taskid] = _Record(task)
        if self._ready(task):
            self._queue(taskid)
            if distribute:
                self._distribute()
        else:
            for i in task.after[1]:
                self._dependents.setdefault(i, []).append(taskid)
        return taskid

    def _deliver(self, taskid):
        success, value = self._results[taskid]
        return defer.succeed(value) if success else defer.fail(value)

    def get_task_result(self, taskid, block=False):
        try:
            _check_id(taskid)
        except TypeError:
            return defer.fail()
        if taskid in self._results:
            return self._deliver(taskid)
        rec = self._live.get(taskid)
        if rec is not None:
            if not block:
                return defer.succeed(None)
            d = defer.Deferred()
            rec.wait(d)
            return d
        if taskid in self._evicted:
            return defer.fail(ResultEvicted(
                f"the result of task {taskid} was dropped: more than {self.max_results} "
                f"finished results were kept (clear results you have read)"))
        return defer.fail(IndexError(f"no task {taskid} (never submitted, or cleared)"))

    def get_task_results(self, taskids, block=False):
        try:
            ids = list(taskids)
        except TypeError:
            return defer.fail()
        d = defer.DeferredList([self.get_task_result(i, block) for i in ids],
                               consumeErrors=True)
        return d.addCallback(list)

    def abort(self, taskid):
        try:
            _check_id(taskid)
            rec = self._live.get(taskid)
            if rec is None:
                if taskid in self._results:
                    success, value = self._results[taskid]
                    if not success and value.check(TaskAborted):
                        raise IndexError(f"task {taskid} was already aborted")
                    raise IndexError(f"task {taskid} has already completed")
                raise IndexError(f"no task {taskid} to abort")
        except Exception:
            return defer.fail()
        if rec.state == "queued":
            self.scheduler.remove_task(rec.task)
        self._finish(taskid, False, Failure(TaskAborted(f"task {taskid} was aborted")))
        return defer.succeed(None)

    def barrier(self, taskids):
        ids = [taskids] if isinstance(taskids, int) else list(taskids)
        for i in ids:
            if isinstance(i, bool) or not isinstance(i, int):
                return defer.fail(TypeError(f"a task id is an int, not {i!r}"))
            if i not in self._live and i not in self._results and i not in self._evicted:
                return defer.fail(IndexError(f"no task {i}"))
        # Finished, failed and evicted tasks are done already.
        live = [rec for rec in map(self._live.get, ids) if rec is not None]
        if not live:
            return defer.succeed(None)
        waiter = _Barrier(len(live))
        for rec in live:
            rec.wait(waiter)
        return waiter.deferred

    def spin(self):
        return defer.succeed(self._distribute())

    def queue_status(self, verbose=False):
        status = {"pending": [], "scheduled": [], "succeeded": [], "failed": []}
        for taskid, rec in self._live.items():
            status["pending" if rec.state == "running" else "scheduled"].append(taskid)
        for taskid, pair in self._results.kept():
            failed = pair is not None and _is_failure(*pair)
            status["failed" if failed else "succeeded"].append(taskid)
        if not verbose:
            status = {k: len(v) for k, v in status.items()}
        return defer.succeed(status)

    def clear(self, taskids=None):
        if taskids is None:
            count = len(self._results)
            self._results.clear()
            self._evicted.clear()
            self.store.delete()
            if count >= RELEASE_AFTER:
                release_memory()
            return defer.succeed(count)
        ids = [taskids] if isinstance(taskids, int) else list(taskids)
        missing = [i for i in ids if i not in self._results]
        count = 0
        for i in ids:
            if self._results.discard(i):
                count += 1
        self.store.delete([i for i in ids if i not in missing])
        if count >= RELEASE_AFTER:
            release_memory()
        if missing:
            return defer.fail(KeyError(f"no finished result for task ids {missing}"))
        return defer.succeed(count)

    def stop(self):
        """Cancel the timers and close the store (for a controller that is going away)."""
        for call in self._penalties:
            if call.active():
                call.cancel()
        self._penalties.clear()
        for rec in self._live.values():
            if rec.timer is not None:
                rec.timer.cancel()
                rec.timer = None
        self.store.close()
