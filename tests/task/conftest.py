"""Fixtures of the task-farm tests."""
import pytest

from ipkernel.interfaces.task import ITaskController
from ipkernel.task import TaskController


@pytest.fixture
def make_tc(make_controller):
    """``make(n=1, **TaskController kwargs)``: a task controller over ``n``
    in-process engines (the registered adapter when no kwargs are given)."""
    made = []

    def make(n=1, **kwargs):
        controller = make_controller(n)
        tc = TaskController(controller, **kwargs) if kwargs else ITaskController(controller)
        made.append(tc)
        return tc

    yield make
    for tc in made:
        tc.stop()
