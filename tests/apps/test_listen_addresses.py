"""Tier 3 (issue 14): where ``ipcontroller`` listens and what its FURLs name,
and what engines and clients say when they cannot reach it.

Real processes on loopback and on this host's own addresses (never any
other): ``--engine-ip 0.0.0.0`` writes hints for this host's addresses,
loopback last, and warns; an address the host lacks (errno 99) and a port
in use are told apart; an engine whose controller is not there exits within
seconds, naming the address it tried.
"""
import json
import shutil
import socket
import subprocess
import time

import pytest
import pytest_twisted
from twisted.internet import protocol, reactor

from ipkernel import asyncclient, fcutil, hostaddrs
from ipkernel.clusterdir import write_private_file
from ipkernel.error import ControllerError

pytestmark = [pytest.mark.tier3, pytest.mark.timeout(120)]

#: An address this host does not have (only ever bound to, never sent to).
ABSENT = "10.213.250.250"
#: Bound for a program that should fail at once, or within its own short limit.
PROMPT = 30.0


def hints(furl_file):
    """The location hints of the FURL in ``furl_file``, as a list."""
    furl = open(furl_file).read().strip()
    return furl.split("@", 1)[1].split("/", 1)[0].split(",")


def ipv4_from_ip_command():
    """This host's non-loopback IPv4 addresses as ``ip -j addr`` lists them
    (a second opinion on ipkernel.hostaddrs), or None without ``ip``."""
    if shutil.which("ip") is None:
        return None
    out = subprocess.run(["ip", "-j", "-4", "addr", "show"], capture_output=True, text=True,
                         timeout=10, check=True).stdout
    return {a["local"] for link in json.loads(out) for a in link.get("addr_info", ())
            if not a["local"].startswith("127.")}


def closed_port():
    """A loopback port nobody listens on (bound a moment ago, then closed)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def furl_at(path, port, tubid="b" * 32):
    """Write an engine FURL pointing at 127.0.0.1:``port`` into ``path``."""
    write_private_file(path, f"pb://{tubid}@tcp:127.0.0.1:{port}/{'s' * 32}\n")
    return path


@pytest_twisted.ensureDeferred
async def test_every_address_gives_hints_for_this_hosts_addresses_then_loopback(cluster):
    mec = await cluster.start(n_engines=1, controller_args=["--engine-ip", "0.0.0.0",
                                                           "--client-ip", "0.0.0.0"])
    own = hostaddrs.addresses(4, loopback=False)
    for furl_file in (cluster.engine_furl_file, cluster.mec_furl_file):
        found = hints(furl_file)
        port = found[-1].rsplit(":", 1)[1]
        assert found == [f"tcp:{a}:{port}" for a in own] + [f"tcp:127.0.0.1:{port}"]
    second_opinion = ipv4_from_ip_command()
    if second_opinion is not None:
        assert set(own) == second_opinion
    # The engine, on the controller's host, won on loopback: lane and plain data channel.
    assert "joined the data channel at 127.0.0.1:" in cluster.engines[0].output
    assert await mec.get_ids() == [0]
    if not own:
        pytest.skip("this host has no address but loopback: the other hints are not tried")
    # Each of this host's own addresses in the client FURL leads to the controller.
    furl = open(cluster.mec_furl_file).read().strip()
    head, _, tail = furl.partition("@")
    for address in own:
        port = hints(cluster.mec_furl_file)[-1].rsplit(":", 1)[1]
        only = f"{head}@tcp:{address}:{port}/{tail.split('/', 1)[1]}"
        client = await asyncclient.get_multiengine_client(only, tub=cluster.new_tub(),
                                                          timeout=20)
        cluster.clients.append(client)
        assert await client.get_ids() == [0]


@pytest_twisted.ensureDeferred
async def test_listening_beyond_loopback_is_warned_about_naming_ports_and_keys(cluster):
    await cluster.start(n_engines=0, controller_args=["--engine-ip", "0.0.0.0"])
    out = cluster.controller.output
    warned = [line for line in out.splitlines() if "beyond loopback" in line]
    assert len(warned) == 1 and "#warn]" in warned[0]   # engines only: clients stay on loopback
    (line,) = warned
    port = hints(cluster.engine_furl_file)[-1].rsplit(":", 1)[1]
    assert "listening for engines" in line and f"TCP ports {port} and " in line
    assert cluster.engine_furl_file in line and "are the keys" in line
    assert "firewall" in line and "0.0.0.0" in line


@pytest_twisted.ensureDeferred
async def test_a_specific_address_is_its_own_hint_and_loopback_gets_no_warning(cluster):
    await cluster.start(n_engines=1, controller_args=["--engine-ip", "127.0.0.2"])
    port = hints(cluster.engine_furl_file)[0].rsplit(":", 1)[1]
    assert hints(cluster.engine_furl_file) == [f"tcp:127.0.0.2:{port}"]
    assert hints(cluster.mec_furl_file)[0].startswith("tcp:127.0.0.1:")
    assert "beyond loopback" not in cluster.controller.output


@pytest_twisted.ensureDeferred
async def test_an_own_non_loopback_address_is_its_only_hint(cluster):
    own = hostaddrs.addresses(4, loopback=False)
    if not own:
        pytest.skip("this host has no IPv4 address but loopback")
    mec = await cluster.start(n_engines=1, controller_args=["--engine-ip", own[0]])
    port = hints(cluster.engine_furl_file)[0].rsplit(":", 1)[1]
    assert hints(cluster.engine_furl_file) == [f"tcp:{own[0]}:{port}"]
    assert await mec.get_ids() == [0]
    assert f"on an address ({own[0]})" in cluster.controller.output


@pytest_twisted.ensureDeferred
async def test_an_address_this_host_lacks_is_named_not_taken_for_a_port_in_use(cluster):
    started = time.monotonic()
    controller = cluster.start_controller("--engine-ip", ABSENT)
    assert await controller.wait(PROMPT) == 1
    assert time.monotonic() - started < PROMPT
    out = controller.output
    assert f"this host has no address {ABSENT}" in out
    assert "pass --engine-ip one of them, or 0.0.0.0" in out and "127.0.0.1" in out
    for address in hostaddrs.addresses(4, loopback=False):
        assert address in out
    assert "in use" not in out


@pytest.mark.parametrize("option, said", [
    ("--engine-port", []),
    ("--client-data-port", ["cannot open the data channel for clients on 127.0.0.1:{port}"]),
], ids=["engine port", "client data port"])
@pytest_twisted.ensureDeferred
async def test_a_port_in_use_is_reported_naming_its_option(cluster, option, said):
    holder = socket.socket()
    try:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        controller = cluster.start_controller(option, str(port))
        assert await controller.wait(PROMPT) == 1
    finally:
        holder.close()
    out = controller.output
    assert f"port {port} on 127.0.0.1 is in use" in out and f"{option} 0" in out
    for line in said:
        assert line.format(port=port) in out
    assert "has no address" not in out


@pytest_twisted.ensureDeferred
async def test_fixed_ports_are_used_and_named_in_the_warning(cluster):
    ports = []
    for _ in range(2):   # two free ports, found by binding (then closed for the controller)
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            ports.append(s.getsockname()[1])
    await cluster.start(n_engines=1, controller_args=[
        "--engine-ip", "0.0.0.0", "--engine-port", str(ports[0]),
        "--engine-data-port", str(ports[1])])
    assert hints(cluster.engine_furl_file)[-1] == f"tcp:127.0.0.1:{ports[0]}"
    assert f"joined the data channel at 127.0.0.1:{ports[1]}" in cluster.engines[0].output
    assert f"TCP ports {ports[0]} and {ports[1]} (its data channel)" in cluster.controller.output


@pytest_twisted.ensureDeferred
async def test_an_engine_whose_controller_is_not_there_exits_within_seconds(cluster, tmp_path):
    port = closed_port()
    furl_file = furl_at(tmp_path / "engine.furl", port)
    started = time.monotonic()
    engine = cluster.start_engine("--furl-file", str(furl_file), "--unreachable-timeout", "2")
    # the first refused attempt is logged at once, before the engine gives up
    await cluster.poll(lambda: "cannot reach the controller at" in engine.output,
                       "the first warning", timeout=PROMPT)
    assert await engine.wait(PROMPT) == 1
    elapsed = time.monotonic() - started
    assert 2 <= elapsed < PROMPT   # its own short limit, not --register-timeout's 60 s
    out = engine.output
    first = out.index("cannot reach the controller at")
    last = out.index("nothing answered at")
    assert first < last
    assert f"nothing answered at tcp:127.0.0.1:{port}" in out and "within 2 s" in out
    assert "connection refused" in out and "--engine-ip/--engine-location" in out
    assert "firewall" in out and "ipengine --unreachable-timeout" in out
    assert "s" * 32 not in out   # no FURL secret


@pytest_twisted.ensureDeferred
async def test_the_default_unreachable_limit_is_seconds_not_the_register_timeout(cluster,
                                                                                tmp_path):
    furl_file = furl_at(tmp_path / "engine.furl", closed_port())
    started = time.monotonic()
    engine = cluster.start_engine("--furl-file", str(furl_file))
    assert await engine.wait(45) == 1
    assert time.monotonic() - started < 45    # --register-timeout is 60 s
    assert "within 10 s" in engine.output and "nothing answered at" in engine.output


@pytest_twisted.ensureDeferred
async def test_a_controller_that_answers_but_is_slow_is_left_to_the_register_timeout(
        cluster, tmp_path):
    # a port that accepts TCP connections and then says nothing (an overloaded controller)
    accepted = []

    class Silent(protocol.Protocol):
        def connectionMade(self):
            accepted.append(self.transport)
    port = reactor.listenTCP(0, protocol.Factory.forProtocol(Silent), interface="127.0.0.1")
    try:
        furl_file = furl_at(tmp_path / "engine.furl", port.getHost().port)
        engine = cluster.start_engine("--furl-file", str(furl_file),
                                      "--unreachable-timeout", "1", "--register-timeout", "6")
        assert await engine.wait(PROMPT) == 1
    finally:
        for transport in accepted:
            transport.abortConnection()
        await port.stopListening()
    assert accepted
    out = engine.output
    assert "could not register with the controller" in out and "within 6 s" in out
    assert "nothing answered at" not in out


@pytest_twisted.ensureDeferred
async def test_an_engine_that_waits_for_the_furl_file_outlives_a_slow_controller(cluster):
    # as LocalCluster starts engines: before the controller, waiting for its FURL file
    engine = cluster.start_engine("--unreachable-timeout", "1")
    await cluster.poll(lambda: "waiting up to" in engine.output, "the engine to wait")
    cluster.start_controller()
    mec = await cluster.connect()
    await cluster.wait_for_ids(mec, [0])
    assert not engine.ended


@pytest_twisted.ensureDeferred
async def test_a_client_that_cannot_connect_names_the_locations_tried(client_tub, tmp_path):
    port = closed_port()
    furl_file = tmp_path / "client.furl"
    write_private_file(furl_file, f"pb://{'c' * 32}@tcp:127.0.0.1:{port}/{'s' * 32}\n")
    with pytest.raises(ControllerError) as info:
        await asyncclient.get_multiengine_client(str(furl_file), tub=client_tub, timeout=10)
    text = str(info.value)
    assert f"tcp:127.0.0.1:{port}" in text and str(furl_file) in text
    assert "--client-ip" in text and "s" * 32 not in text
    assert fcutil.furl_locations(open(furl_file).read()) == [f"127.0.0.1:{port}"]
