"""FIFO and LIFO schedulers on their own (tier 1)."""
import pytest

from ipkernel.task import FIFOScheduler, LIFOScheduler


class Worker:
    def __init__(self, workerid):
        self.workerid = workerid


class Task:
    def __init__(self, name, rejected=()):
        self.name = name
        self.rejected = set(rejected)


def accept(task, worker):
    return worker.workerid not in task.rejected


@pytest.mark.parametrize("cls, first", [(FIFOScheduler, "a"), (LIFOScheduler, "c")])
def test_order(cls, first):
    s = cls()
    for name in "abc":
        s.add_task(Task(name))
    assert s.schedule(accept) == (None, None)
    s.add_worker(Worker(0))
    worker, task = s.schedule(accept)
    assert (worker.workerid, task.name) == (0, first)
    assert (s.ntasks, s.nworkers) == (2, 0)


def test_an_acceptable_pair_costs_one_check():
    s = FIFOScheduler()
    for i in range(1000):
        s.add_worker(Worker(i))
        s.add_task(Task(str(i)))
    calls = []

    def counting(task, worker):
        calls.append(1)
        return True

    for _ in range(1000):
        assert s.schedule(counting)[0] is not None
    assert len(calls) == 1000


@pytest.mark.parametrize("cls", [FIFOScheduler, LIFOScheduler])
def test_rejected_tasks_stay_queued_in_order(cls):
    s = cls()
    s.add_task(Task("a", rejected=[0]))
    s.add_task(Task("b", rejected=[0]))
    s.add_task(Task("c"))
    s.add_worker(Worker(0))
    worker, task = s.schedule(accept)
    assert task.name == "c"
    assert s.schedule(accept) == (None, None)
    s.add_worker(Worker(1))
    assert s.schedule(accept)[1].name == ("a" if cls is FIFOScheduler else "b")
    s.add_worker(Worker(0))
    s.remove_worker(0)
    assert s.nworkers == 0
