"""Schedulers: pair ready tasks with idle workers (FIFO or LIFO)."""
from collections import deque

from zope.interface import implementer

from ipkernel.interfaces.task import IScheduler


@implementer(IScheduler)
class FIFOScheduler:
    """Oldest task first, to the worker idle the longest."""

    def __init__(self):
        self.tasks = deque()
        self.workers = deque()

    @property
    def ntasks(self):
        return len(self.tasks)

    @property
    def nworkers(self):
        return len(self.workers)

    def add_task(self, task):
        self.tasks.append(task)

    def remove_task(self, task):
        self.tasks.remove(task)

    def add_worker(self, worker):
        self.workers.append(worker)

    def remove_worker(self, workerid):
        self.workers = deque(w for w in self.workers if w.workerid != workerid)

    def _pop_task(self):
        return self.tasks.popleft()

    def _push_back_tasks(self, skipped):
        self.tasks.extendleft(reversed(skipped))

    def _pop_worker_for(self, task, acceptable):
        """Remove and return the first idle worker (in scheduling order) that may
        take ``task``, or None.  Costs O(1) when the first one may."""
        order = range(len(self.workers)) if self._fifo_workers else range(len(self.workers) - 1, -1, -1)
        for i in order:
            worker = self.workers[i]
            if acceptable(task, worker):
                del self.workers[i]
                return worker
        return None

    _fifo_workers = True

    def schedule(self, acceptable):
        skipped = []
        pair = (None, None)
        while self.tasks and self.workers:
            task = self._pop_task()
            worker = self._pop_worker_for(task, acceptable)
            if worker is not None:
                pair = (worker, task)
                break
            skipped.append(task)
        self._push_back_tasks(skipped)
        return pair

    def take(self, n, predicate):
        taken = []
        while self.tasks and len(taken) < n:
            task = self._pop_task()
            if not predicate(task):
                self._push_back_tasks([task])
                break
            taken.append(task)
        return taken


class LIFOScheduler(FIFOScheduler):
    """Newest task first, to the most recently idle worker (a stack: fast
    engines get more work; old tasks may wait long)."""

    _fifo_workers = False

    def _pop_task(self):
        return self.tasks.pop()

    def _push_back_tasks(self, skipped):
        self.tasks.extend(reversed(skipped))
