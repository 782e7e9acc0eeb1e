"""Tier 2: the controller node ipcontroller runs, built in this process."""
import socket

import pytest
import pytest_twisted
from twisted.internet import reactor

from ipkernel.controller.app import build_parser
from ipkernel.controller.node import ControllerNode, NodeSettings, SetupError

pytestmark = pytest.mark.tier2


def node_for(make_tub, tmp_path, **settings):
    return ControllerNode(NodeSettings(work_dir=str(tmp_path), **settings), reactor,
                          tub_factory=lambda role, cert_file: make_tub(started=False))


def test_settings_take_every_option_ipcontroller_has_under_the_same_name(tmp_path):
    options = build_parser().parse_args([
        "--cluster-dir", str(tmp_path), "--payload-cap", "1000", "--no-lane",
        "--data-channel-tls", "--engine-ip", "0.0.0.0", "--task-timeout", "7",
        "--no-memory-reads"])
    settings = NodeSettings.from_options(options, db_dir="/x")
    assert (settings.payload_cap, settings.lane, settings.data_channel_tls) == (1000, False, True)
    assert settings.memory_reads is False and NodeSettings().memory_reads is True
    assert (settings.engine_ip, settings.task_timeout, settings.db_dir) == ("0.0.0.0", 7.0, "/x")
    # every setting with a command-line option is read from it (no name drifts apart)
    dests = vars(options)
    shared = {name for name in NodeSettings.__dataclass_fields__ if name in dests}
    assert {"client_ip", "engine_port", "lane_tls", "history_bytes", "unfetched_total",
            "task_max_engine_losses", "heartbeat_timeout", "max_engines", "memory_reads"} <= shared
    assert all(getattr(settings, name) == dests[name] for name in shared)


@pytest_twisted.ensureDeferred
async def test_a_node_publishes_its_objects_with_lanes_and_data_channel(make_tub, tmp_path):
    node = node_for(make_tub, tmp_path)
    try:
        await node.start()
        assert set(node.furls) == {"mec", "tc", "engine"}
        for name in ("mec", "tc"):
            assert f":{node.ports['client']}/" in node.furls[name]
        assert f":{node.ports['engine']}/" in node.furls["engine"]
        assert set(node.lane_servers) == {"client", "engine"}
        assert all(server.port for server in node.lane_servers.values())
        assert node.data_server is not None and set(node.data_server.ports) == {"client", "engine"}
        assert node.data_server.memory_reads is True
        # the lanes present their role's Tub certificate (written out, private)
        for role, path in node.cert_files.items():
            assert (tmp_path / path.rsplit("/", 1)[1]).stat().st_mode & 0o777 == 0o600
            assert open(path, "rb").read().strip() == node.tubs[role].getCertData().strip()
    finally:
        await node.shutdown()
    assert not node.running
    assert all(server._listener is None for server in node.lane_servers.values())
    await node.shutdown()  # a second time: nothing more to do, and no error


@pytest_twisted.ensureDeferred
async def test_without_lanes_and_data_channel_everything_is_foolscap(make_tub, tmp_path):
    node = node_for(make_tub, tmp_path, lane=False, data_channel=False, engine_furl=False,
                    engine_key=b"k" * 32)
    try:
        await node.start()
        assert node.lane_servers == {} and node.data_server is None
        assert set(node.furls) == {"mec", "tc", "gate"}  # engines come in through the gate only
    finally:
        await node.shutdown()


@pytest_twisted.ensureDeferred
async def test_a_port_in_use_is_named_with_what_to_do(make_tub, tmp_path):
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    port = taken.getsockname()[1]
    node = node_for(make_tub, tmp_path, engine_lane_port=port)
    try:
        with pytest.raises(SetupError) as info:
            await node.start()
        assert f"cannot open the lane port for engines on 127.0.0.1:{port}" in str(info.value)
        assert "--no-lane" in str(info.value)
    finally:
        taken.close()
        await node.shutdown()


@pytest_twisted.ensureDeferred
async def test_furl_files_are_written_when_asked(make_tub, tmp_path):
    files = {"mec": str(tmp_path / "mec.furl"), "engine": str(tmp_path / "engine.furl")}
    node = ControllerNode(NodeSettings(work_dir=str(tmp_path)), reactor,
                          tub_factory=lambda role, cert_file: make_tub(started=False),
                          furl_files=files)
    try:
        await node.start()
        for name, path in files.items():
            assert open(path).read().strip() == node.furls[name]
    finally:
        await node.shutdown()


@pytest_twisted.ensureDeferred
async def test_no_memory_reads_reaches_the_data_channel(make_tub, tmp_path):
    node = node_for(make_tub, tmp_path, memory_reads=False)
    try:
        await node.start()
        assert node.data_server.memory_reads is False
    finally:
        await node.shutdown()
