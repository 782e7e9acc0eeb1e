"""``ipcontroller --db=sqlite``: tasks and results survive a controller restart (tier 3)."""
import pytest
import pytest_twisted

from ipkernel import asyncclient
from ipkernel.clusterdir import TASK_FURL
from ipkernel.task import StringTask

pytestmark = [pytest.mark.tier3, pytest.mark.timeout(120)]

WAIT = 30

# Notes each start in `runs`, then waits (bounded) for the test to create `gate`.
LONG = """
import os, time
with open(runs, 'a') as f:
    f.write('run\\n')
deadline = time.time() + 60
while not os.path.exists(gate) and time.time() < deadline:
    time.sleep(0.02)
opened = os.path.exists(gate)
"""


async def task_client(cluster):
    furl_file = str(cluster.dir / "security" / TASK_FURL)
    return await cluster.within(
        asyncclient.get_task_client(furl_file, tub=cluster.new_tub(), timeout=WAIT),
        WAIT, "a task client")


@pytest_twisted.ensureDeferred
async def test_sqlite_results_and_tasks_survive_a_controller_restart(cluster, tmp_path):
    runs, gate = tmp_path / "runs", tmp_path / "gate"
    await cluster.start(n_engines=1, controller_args=["--db=sqlite"])
    assert (cluster.dir / "db" / "tasks.sqlite").exists()
    tc = await task_client(cluster)
    quick = await tc.run(StringTask("answer = 6 * 7", pull="answer"))
    quick_result = await cluster.within(tc.get_task_result(quick, block=True), WAIT, "quick")
    assert quick_result["answer"] == 42
    long_id = await tc.run(StringTask(LONG, pull="opened",
                                      push={"runs": str(runs), "gate": str(gate)}))
    await cluster.poll(lambda: runs.exists(), "the long task to start", WAIT)
    assert (await tc.queue_status()) == {"pending": 1, "scheduled": 0, "succeeded": 1,
                                         "failed": 0}

    old = cluster.controller
    old.signal("TERM")
    assert await old.wait() == 0
    cluster.start_controller("-r", "--db=sqlite")
    await cluster.connect()  # waits (bounded) until the new controller answers

    fresh = await task_client(cluster)  # a new client, from the same FURL file
    again = await cluster.within(fresh.get_task_result(quick), WAIT, "the stored result")
    assert again["answer"] == 42 and again.taskid == quick
    later = await fresh.run(StringTask("pass"))
    assert later == long_id + 1  # ids continue
    gate.touch()  # lets the first run (if still going) and the second one finish
    done = await cluster.within(fresh.get_task_result(long_id, block=True), WAIT, "long task")
    assert done["opened"] is True
    assert runs.read_text().count("run") == 2  # it ran again after the restart
    assert await fresh.clear([quick]) == 1
    await cluster.within(fresh.barrier([later]), WAIT, "the later task")
    assert await fresh.clear() == 2  # the long task and the later one
    with pytest.raises(IndexError):
        await fresh.get_task_result(quick)
