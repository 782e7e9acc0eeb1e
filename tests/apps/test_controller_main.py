"""``ipkernel.controller.app.main`` run inside the test process (with the test reactor)."""
import os

import pytest
import pytest_twisted
from twisted.internet import defer, protocol, reactor

from ipkernel import asyncclient
from ipkernel.clusterdir import MULTIENGINE_FURL
from ipkernel.controller import app

pytestmark = [pytest.mark.tier3, pytest.mark.timeout(60)]


def start_main(*argv):
    return defer.ensureDeferred(app.main(reactor, list(argv)))


@pytest_twisted.ensureDeferred
async def test_main_serves_clients_until_kill_controller(cluster, tmp_path, client_tub):
    logfile = tmp_path / "controller.log"
    done = start_main("--cluster-dir", str(cluster.dir), "--logfile", str(logfile))
    furl_file = cluster.dir / "security" / MULTIENGINE_FURL
    pid_file = cluster.dir / "pid" / "ipcontroller.pid"
    await cluster.poll(lambda: furl_file.exists() or done.called, "the FURL file")
    assert not done.called, "main() ended early"

    mec = await asyncclient.get_multiengine_client(str(furl_file), tub=client_tub)
    assert await mec.get_ids() == []
    assert int(pid_file.read_text()) == os.getpid()
    await mec.kill(controller=True)
    await done.addTimeout(10, reactor)

    assert not pid_file.exists()
    text = logfile.read_text()
    assert f"{app.READY}: engine FURL file" in text
    assert "ipcontroller stopped" in text


@pytest_twisted.ensureDeferred
async def test_main_reports_a_busy_port_and_exits_1(cluster, tmp_path):
    taken = reactor.listenTCP(0, protocol.Factory(), interface="127.0.0.1")
    port = taken.getHost().port
    logfile = tmp_path / "controller.log"
    try:
        with pytest.raises(SystemExit) as info:
            await start_main("--cluster-dir", str(cluster.dir), "--logfile", str(logfile),
                             "--client-port", str(port))
    finally:
        await taken.stopListening()
    assert info.value.code == 1
    assert f"cannot listen for clients on 127.0.0.1:{port}" in logfile.read_text()
    assert not (cluster.dir / "pid" / "ipcontroller.pid").exists()


@pytest_twisted.ensureDeferred
async def test_an_unexpected_error_at_start_is_logged_whole_and_exits_1(cluster, tmp_path,
                                                                       monkeypatch):
    from ipkernel.controller.node import ControllerNode

    def broken(self):
        raise RuntimeError("a bug in the dashboard's start")
    monkeypatch.setattr(ControllerNode, "_start_dashboard", broken)
    logfile = tmp_path / "controller.log"
    with pytest.raises(SystemExit) as info:
        await start_main("--cluster-dir", str(cluster.dir), "--logfile", str(logfile))
    assert info.value.code == 1
    text = logfile.read_text()
    assert "ipcontroller failed unexpectedly" in text and "please report it" in text
    assert "Traceback" in text and "RuntimeError: a bug in the dashboard's start" in text
    assert "ipcontroller stopped" in text
    assert not (cluster.dir / "pid" / "ipcontroller.pid").exists()


@pytest_twisted.ensureDeferred
async def test_main_refuses_a_timeout_shorter_than_the_period(cluster, tmp_path):
    logfile = tmp_path / "controller.log"
    with pytest.raises(SystemExit):
        await start_main("--cluster-dir", str(cluster.dir), "--logfile", str(logfile),
                         "--heartbeat-period", "5", "--heartbeat-timeout", "1")
    assert "heartbeat timeout" in logfile.read_text()


def test_task_farm_options_reach_the_task_controller(tmp_path):
    options = app.build_parser().parse_args([
        "--cluster-dir", str(tmp_path), "--task-scheduler", "lifo", "--task-timeout", "7",
        "--task-max-results", "50", "--task-failure-penalty", "0.5"])
    from ipkernel.clusterdir import ClusterDir
    controller_app = app.ControllerApp(reactor, options, ClusterDir(tmp_path).create())
    try:
        tc = controller_app.controller._ipkernel_task_controller
        assert type(tc.scheduler).__name__ == "LIFOScheduler"
        assert (tc.timeout, tc.max_results, tc.failure_penalty) == (7.0, 50, 0.5)
    finally:
        tc.stop()


@pytest_twisted.ensureDeferred
async def test_no_data_channel_option_keeps_everything_on_foolscap(cluster):
    mec = await cluster.start(n_engines=1, controller_args=["--no-data-channel"])
    assert mec.data is None
    big = b"x" * (1 << 20)
    await mec.push({"big": big}, targets=0)
    assert await mec.pull("big", targets=0) == [big]
    assert "data channel:" not in cluster.controller.output  # no data port was opened


@pytest_twisted.ensureDeferred
async def test_by_default_clients_and_engines_join_the_data_channel(cluster):
    mec = await cluster.start(n_engines=1)
    assert mec.data is not None and mec.data.connected
    big = bytes(range(256)) * 8192  # 2 MiB: over the threshold
    await mec.push({"big": big}, targets=0)
    assert await mec.pull("big", targets=0) == [big]
    assert mec.data.bytes_sent >= len(big) and mec.data.bytes_received >= len(big)
    assert "data channel: client port" in cluster.controller.output


@pytest_twisted.ensureDeferred
async def test_by_default_clients_and_engines_join_lanes(cluster, monkeypatch):
    from ipkernel.lane import LaneProtocol
    lane_calls = []
    original = LaneProtocol.callRemote

    def counting(self, method, *args, **kwargs):
        lane_calls.append(method)
        return original(self, method, *args, **kwargs)
    monkeypatch.setattr(LaneProtocol, "callRemote", counting)

    mec = await cluster.start(n_engines=1)
    assert mec.remote.lane is not None and mec.remote.lane.joined
    engine = cluster.engines[0]
    await cluster.poll(lambda: "joined the controller's lane" in engine.output,
                       "the engine to join the controller's lane")
    await mec.execute("a = 6 * 7")
    assert await mec.pull("a", targets=0) == [42]
    assert lane_calls[-2:] == ["execute", "pull"]
    assert "lanes: port" in cluster.controller.output


@pytest_twisted.ensureDeferred
async def test_lane_tls_encrypts_the_lanes_on_this_host_too(cluster):
    mec = await cluster.start(n_engines=1, controller_args=["--lane-tls"])
    assert mec.remote.lane is not None and mec.remote.lane.encrypted
    engine = cluster.engines[0]
    await cluster.poll(lambda: "joined the controller's lane" in engine.output,
                       "the engine to join the controller's lane")
    assert "(TLS)" in engine.output.split("joined the controller's lane", 1)[1].split("\n")[0]
    before = mec.remote.lane.answers_in
    await mec.execute("a = 6 * 7")
    assert await mec.pull("a", targets=0) == [42]
    assert mec.remote.lane.answers_in == before + 2  # both answers came on the TLS lane
    assert "lanes: port" in cluster.controller.output
    assert "(TLS for every peer)" in cluster.controller.output


@pytest_twisted.ensureDeferred
async def test_no_lane_option_keeps_every_call_on_foolscap(cluster):
    from ipkernel.error import CompositeError
    mec = await cluster.start(n_engines=1, controller_args=["--no-lane"])
    assert mec.remote.lane is None
    await mec.execute("a = 6 * 7")
    assert await mec.pull("a", targets=0) == [42]
    with pytest.raises(CompositeError) as info:
        await mec.execute("1 / 0")
    assert [type(e) for e in info.value.exceptions] == [ZeroDivisionError]
    engine = cluster.engines[0]
    # "ipengine ready" is logged once its joins are done: no lane was joined
    await cluster.poll(lambda: "ipengine ready" in engine.output, "the engine to be ready")
    assert "the controller's lane" not in engine.output
    assert "lanes: port" not in cluster.controller.output  # no lane port was opened


@pytest_twisted.ensureDeferred
async def test_by_default_task_clients_join_lanes_too(cluster):
    from ipkernel.clusterdir import TASK_FURL
    from ipkernel.task import StringTask
    await cluster.start(n_engines=1)
    tc = await asyncclient.get_task_client(str(cluster.dir / "security" / TASK_FURL),
                                           tub=cluster.new_tub(), timeout=10)
    reference = tc.remote_reference
    try:
        assert reference.lane is not None and reference.lane.joined
        task_id = await tc.run(StringTask("a = 6 * 7", pull="a"))
        result = await cluster.within(tc.get_task_result(task_id, block=True), 20,
                                      "the task's result")
        assert result.ns.a == 42
    finally:
        reference.close_lane()
