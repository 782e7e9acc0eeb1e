"""Contracts of the task farm: load-balanced tasks the user never pins to an engine.

A task (:class:`ITask`) is handed to an :class:`ITaskController`, which gives
it an integer id and runs it on whichever engine is free, through an
:class:`IWorker` chosen by an :class:`IScheduler`.  Every ITaskController
method returns a Deferred; "fires with X" names its result and "fails with E"
the exception its Failure wraps.
"""
from zope.interface import Attribute, Interface

from .controller import IControllerBase


class ITask(Interface):
    """One unit of work and the rules for running it."""

    taskid = Attribute("The id given by the task controller (None before ``run``).")
    retries = Attribute("How many more times a failed run is repeated (an int >= 0).")
    recovery_task = Attribute("An ITask run, under the same id, when every retry failed; or None.")
    after = Attribute("None, or ``(mode, [taskids])`` with mode 'all' or 'any': run only "
                      "once all (any) of those tasks have finished, successfully or not.")
    depend = Attribute("None, or a function ``depend(properties) -> bool`` called on the "
                       "engine with a copy of its properties; false or an exception means "
                       "the engine rejects the task.")

    def run_on(engine):
        """Run the task on the IEngineQueued ``engine``.

        Fires with ``(success, result)``: ``(True, value)`` or ``(False, Failure)``;
        it never fails.  A Failure wrapping TaskRejectError means the engine
        refused the task (``depend`` or the task's own code raised it).
        """

    def finish(success, result):
        """Turn a final outcome into what ``get_task_result`` delivers:
        ``(True, value)`` to fire with ``value``, ``(False, failure)`` to fail with it."""


class IWorker(Interface):
    """Something that runs tasks: one per registered engine."""

    workerid = Attribute("The engine id.")

    def run(task):
        """Run ``task``; fires with ``(success, result)`` as :meth:`ITask.run_on`."""

    def run_batch(tasks):
        """Run batchable ``tasks`` (see ``ITask.batchable``) in one engine
        command; fires with one ``(success, result)`` per task, ``(None,
        None)`` for a task the engine did not get to run (interrupted)."""


class IScheduler(Interface):
    """Pairs ready tasks with idle workers.  Plain methods, not Deferreds."""

    ntasks = Attribute("Number of ready tasks.")
    nworkers = Attribute("Number of idle workers.")

    def add_task(task):
        """Queue a ready task."""

    def remove_task(task):
        """Unqueue ``task``; ValueError if it is not queued."""

    def add_worker(worker):
        """Add an idle worker."""

    def remove_worker(workerid):
        """Forget the idle worker ``workerid`` (no error if it is not idle)."""

    def schedule(acceptable):
        """Return ``(worker, task)`` for the next pair to run, or ``(None, None)``.

        ``acceptable(task, worker)`` says whether ``worker`` may take
        ``task`` (it has not rejected it).  Both are removed from the queues.
        Tasks no idle worker may take stay queued, in order.  A task that
        any idle worker accepts costs O(1) amortised.
        """

    def take(n, predicate):
        """Remove and return up to ``n`` more tasks, next in scheduling order,
        stopping at the first one ``predicate(task)`` refuses (it stays
        queued).  The controller fills a batch for a worker with them."""


class ITaskController(IControllerBase):
    """The load-balanced, fault-tolerant task farm over a controller's engines."""

    def run(task):
        """Submit ``task``; fires with its id (0, 1, 2, ... per controller).

        Fails with TypeError if ``task`` is not an ITask, IndexError if its
        ``after`` names ids never submitted.  A task object runs once: submit a
        new one to run again (ValueError otherwise).
        """

    def run_many(tasks):
        """Submit a list of tasks at once; fires with their ids, in order.

        Every task is checked first: if one is refused (for the reasons of
        :meth:`run`) none is submitted.  A task's ``after`` may name tasks
        earlier in the same list.  Cheaper than one :meth:`run` per task.
        """

    def get_task_results(taskids, block=False):
        """Fire with one ``(success, value)`` pair per id of ``taskids``, in order.

        ``value`` is what :meth:`get_task_result` fires with, or (``success``
        false) the Failure it fails with.  With ``block`` the list comes when
        every task has finished.
        """

    def get_task_result(taskid, block=False):
        """Fire with the task's result once it has finished.

        A StringTask's result is a TaskResult (also when its code failed: see
        ``TaskResult.failure``); a MapTask's is the function's return value,
        and a failed MapTask fails with its exception.  Unfinished and
        ``block`` false: fires with None; ``block`` true: waits (also while no engine is
        registered: a queued task runs once one registers).  Fails with
        TaskAborted / TaskTimeout for aborted / timed-out tasks,
        :class:`ipkernel.error.TaskKilledEngines` (an EngineError) for a task
        whose engine died under it more often than the controller allows,
        IndexError for an unknown or cleared id, :class:`ipkernel.error.ResultEvicted` (an
        IndexError) for a result dropped by the cap on kept results, and
        TypeError for a non-int id.
        """

    def abort(taskid):
        """Abort a queued or running task; fires with None.

        Its result becomes a TaskAborted failure at once; a running task's
        code is left to finish and its outcome is discarded.  Fails with
        TypeError for a non-int id, IndexError for an unknown, finished
        ("already completed") or already aborted task.
        """

    def barrier(taskids):
        """Fire with None once every task of ``taskids`` (an int or a list) has finished,
        whatever the outcome.  Fails with IndexError for unknown ids."""

    def spin():
        """Try to start queued tasks now; fires with True if one started."""

    def queue_status(verbose=False):
        """Fire with ``{'pending', 'scheduled', 'succeeded', 'failed'}``.

        ``pending``: running tasks; ``scheduled``: waiting ones; finished
        tasks of every kind count as ``succeeded`` or ``failed``.  Counts, or
        lists of ids when ``verbose``.
        """

    def clear(taskids=None):
        """Forget finished results (None: all); fires with the number dropped.

        ``taskids`` is an int or a list.  Ids without a finished result are
        left alone and the Deferred then fails with KeyError naming them
        (after the others were dropped).
        """
