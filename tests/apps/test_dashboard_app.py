"""Tier 3: ipcontroller serves its dashboard (issue 17): the URL file (0600,
removed at stop), the log line, the token, ``--no-dashboard``, a taken port."""
import json
import os
import re
import socket
import stat

import pytest
import pytest_twisted
from httpget import get

pytestmark = [pytest.mark.tier3, pytest.mark.timeout(120)]


def url_file(cluster):
    return cluster.dir / "security" / "ipcontroller-dashboard.url"


@pytest_twisted.ensureDeferred
async def test_the_controller_serves_its_dashboard_behind_a_token(cluster):
    await cluster.start(n_engines=1)
    path = url_file(cluster)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    url = path.read_text().strip()
    match = re.fullmatch(r"http://127\.0\.0\.1:(\d+)/\?token=([\w-]{40,})", url)
    assert match, url
    assert f"dashboard: {url}" in cluster.controller.output
    base, token = url.split("?token=")
    assert (await get(base + "api/engines"))[0] == 403
    code, _, body = await get(base + "api/engines", token)
    assert code == 200
    assert [(e["id"], e["host"]) for e in json.loads(body)] == [(0, "127.0.0.1")]
    for engine in cluster.engines:
        assert await engine.stop() == 0
    assert await cluster.controller.stop() == 0
    assert not path.exists()


@pytest_twisted.ensureDeferred
async def test_no_dashboard_writes_no_url(cluster):
    await cluster.start(n_engines=0, controller_args=["--no-dashboard"])
    assert "dashboard:" not in cluster.controller.output
    assert not url_file(cluster).exists()


@pytest_twisted.ensureDeferred
async def test_a_taken_dashboard_port_is_named(cluster):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        cluster.start_controller("--dashboard-port", str(port))
        code = await cluster.within(cluster.controller.wait(30), 30, "the controller to exit")
    out = cluster.controller.output
    assert code == 1, out
    assert f"cannot serve the dashboard on 127.0.0.1:{port}" in out
    assert "--dashboard-port" in out and "--no-dashboard" in out


@pytest_twisted.ensureDeferred
async def test_clients_are_listed_with_their_calls_on_lanes_until_they_go(cluster):
    from ipkernel import asyncclient
    from ipkernel.clusterdir import TASK_FURL
    from ipkernel.task import StringTask

    mec = await cluster.start(n_engines=1)
    base, token = url_file(cluster).read_text().strip().split("?token=")
    tub = cluster.new_tub()
    tc = await asyncclient.get_task_client(str(cluster.dir / "security" / TASK_FURL), tub=tub,
                                           timeout=10)
    assert mec.remote.lane is not None and tc.remote_reference.lane is not None
    lane_answers = mec.remote.lane.answers_in
    for _ in range(5):
        await mec.execute("a = 1")
    ids = [await tc.run(StringTask("b = 2")) for _ in range(3)]
    await cluster.within(tc.barrier(ids), 20, "the tasks")
    assert mec.remote.lane.answers_in >= lane_answers + 5   # the executes went on the lane

    async def rows():
        return json.loads((await get(base + "api/clients", token))[2])
    found = await rows()
    by_use = {tuple(r["uses"]): r for r in found}
    assert set(by_use) == {("multi-engine",), ("tasks",)}, found   # two Tubs: two rows
    assert by_use[("multi-engine",)]["calls"] >= 5       # the executes
    assert by_use[("tasks",)]["calls"] >= 3 + 1          # the runs and the barrier
    assert all(r["peer"].startswith("127.0.0.1:") for r in found)

    tc.close()
    cluster.tubs.remove(tub)
    await tub.stopService()   # its connection goes: the controller forgets the session

    async def task_client_gone():
        return [tuple(r["uses"]) for r in await rows()] == [("multi-engine",)]
    await cluster.poll(task_client_gone, "the task client's row to go", timeout=20)
