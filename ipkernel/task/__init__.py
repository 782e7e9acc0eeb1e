"""The task farm: tasks, schedulers and the TaskController.

Importing this package registers the adapter ``IControllerBase ->
ITaskController``; one controller gets one TaskController (cached on it).
"""
from twisted.python import components

from ipkernel.interfaces.controller import IControllerBase
from ipkernel.interfaces.task import ITaskController
from ipkernel.task.controller import TaskController, WorkerFromQueuedEngine
from ipkernel.task.schedulers import FIFOScheduler, LIFOScheduler
from ipkernel.task.tasks import BaseTask, MapTask, ResultNS, StringTask, TaskResult


def task_controller_for(controller):
    """The TaskController of ``controller`` (made on first use)."""
    tc = getattr(controller, "_ipkernel_task_controller", None)
    if tc is None:
        tc = TaskController(controller)
        controller._ipkernel_task_controller = tc
    return tc


if components.getAdapterFactory(IControllerBase, ITaskController, None) is None:
    components.registerAdapter(task_controller_for, IControllerBase, ITaskController)

__all__ = ["BaseTask", "FIFOScheduler", "LIFOScheduler", "MapTask", "ResultNS", "StringTask",
           "TaskController", "TaskResult", "WorkerFromQueuedEngine", "task_controller_for"]
