"""Tier 4 (issue 15): engines and a client on another host call over lanes, and
the lanes run TLS.

Two network namespaces (``tests/netns.py``): the controller in *a*
(``--engine-ip 0.0.0.0 --client-ip 0.0.0.0``, nothing else), two engines
and a blocking client in *b*.  The test checks:

* the engines and the client join lanes at *a*'s address over TLS (their
  logs, the controller's log, the client's own lanes: the reactor's and the
  direct path's stdlib ``ssl`` socket);
* the calls really go on the lanes: each engine's lane counts the commands
  that arrived on it (read in the engine by code the client executes), and
  the client's direct lane counts its calls;
* the lane ports present the role's Foolscap certificate (the FURL's tub
  id), and a raw peer without the token gets nothing from them (silence,
  junk, or TLS with a made-up token: closed, not a byte sent);
* on the wire (a capture in *b* of every frame, AF_PACKET) the lane
  connections start with a TLS handshake, and neither the marker the client
  executed and pulled nor any call's text is readable anywhere, while the
  capture does see plaintext where there is some (Foolscap's greeting).
"""
import os
import re
import struct
import sys
import textwrap

import pytest

from ipkernel.lane.protocol import HELLO, encode_frame
from ipkernel.transport.tls import tubid_of_der

# Helpers and fixtures of the data channel's between-hosts test (one copy).
from network.test_between_hosts import (CAPTURE, RAW, WAIT, child_env, frames,  # noqa: F401
                                        furl_parts, hosts, procs, result_of,
                                        start_controller, start_engine, wait_for)

pytestmark = [pytest.mark.tier4, pytest.mark.timeout(300)]

#: Small calls the client makes once its lanes are joined.
CALLS = 50

#: Run in each engine: its joined lanes as ``(calls that arrived, TLS?)``.
LANES_PROBE = ("import gc\nfrom ipkernel.lane.protocol import LaneProtocol\n"
               "lanes = [(o.calls_in, o.encrypted) for o in gc.get_objects() "
               "if isinstance(o, LaneProtocol) and o.joined]")

#: A blocking client in the other namespace: small calls with the marker in
#: them, the engines' lane counters before and after, and what its own lanes
#: are.  Prints one JSON line.
CLIENT = textwrap.dedent("""
    import json, ssl, sys
    from ipkernel import client
    furl_file, marker, calls, probe = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
    mec = client.MultiEngineClient(furl_file, timeout=60)
    out = {"ids": mec.get_ids()}
    mec.execute(probe)
    out["before"] = mec.pull("lanes")
    for i in range(calls):
        mec.execute("said = %r + str(%d)" % (marker, i))
    out["said"] = mec.pull("said")
    mec.execute(probe)
    out["after"] = mec.pull("lanes")
    fc = mec._holder[0]
    out["reactor_lane_tls"] = fc.remote.lane is not None and fc.remote.lane.encrypted
    lane = mec._direct_calls().lane
    out["direct_tls"] = lane is not None and isinstance(lane._sock, ssl.SSLSocket)
    out["direct_calls"] = lane.calls if lane is not None else 0
    out["direct_peer"] = lane._sock.getpeername()[0] if lane is not None else None
    mec.close()
    print("RESULT " + json.dumps(out), flush=True)
""")


def lane_ports(controller_output):
    """``{role: port}`` of the lanes, from the controller's log."""
    found = re.search(r"lanes: port (\d+) for clients, (\d+) for engines", controller_output)
    assert found, f"no lane ports in:\n{controller_output}"
    return {"client": int(found.group(1)), "engine": int(found.group(2))}


def tcp_payloads(captured, port):
    """``[(to the port?, payload)]`` of the IPv4 TCP segments to or from
    ``port`` in captured Ethernet frames, in capture order (empty ones left out)."""
    found = []
    for frame in captured:
        if len(frame) < 34 or frame[12:14] != b"\x08\x00":
            continue
        ip = frame[14:]
        header, total = (ip[0] & 0x0F) * 4, struct.unpack("!H", ip[2:4])[0]
        if ip[9] != 6:
            continue
        tcp = ip[header:total]
        src, dst = struct.unpack("!HH", tcp[:4])
        payload = tcp[(tcp[12] >> 4) * 4:]
        if payload and port in (src, dst):
            found.append((dst == port, payload))
    return found


def test_engines_and_a_client_on_another_host_call_over_tls_lanes(hosts, procs, tmp_path):
    (name_a, addr_a), (name_b, addr_b) = hosts
    python, env = sys.executable, child_env()
    controller, cluster = start_controller(procs, name_a, tmp_path)
    security = cluster / "security"
    engine_tubid, _, engine_secret = furl_parts(security / "ipcontroller-engine.furl")
    client_tubid, _, client_secret = furl_parts(security / "ipcontroller-mec.furl")
    ports = lane_ports(controller.output)
    assert "(its lanes)" in controller.output  # named in the beyond-loopback warning

    capture_file, ready, stop = tmp_path / "b.pcap", tmp_path / "ready", tmp_path / "stop"
    capture = procs(name_b, [python, "-c", CAPTURE, str(capture_file), str(ready), str(stop),
                             "240"], tmp_path / "capture.log", env)
    wait_for(ready.exists, "the capture to start")

    engines = [start_engine(procs, name_b, tmp_path, security, f"engine{i}") for i in range(2)]
    for engine in engines:
        assert f"joined the controller's lane at {addr_a}:{ports['engine']} (TLS)" in \
            engine.output, engine.output
        assert "calls go through Foolscap" not in engine.output

    # Raw peers in b without a token get nothing from either lane port.
    hello_head = encode_frame(HELLO, 0, b"null", [b"x" * 32])[:-32]
    raw = {}
    for label, port, mode in (("engine-nothing", ports["engine"], "nothing"),
                              ("engine-junk", ports["engine"], "junk"),
                              ("engine-tls", ports["engine"], "tls"),
                              ("client-tls", ports["client"], "tls")):
        raw[label] = procs(name_b, [python, "-c", RAW, addr_a, str(port), mode, "30", "32",
                                    hello_head.hex()], tmp_path / f"raw-{label}.log", env)
    got = {label: result_of(proc, 90) for label, proc in raw.items()}
    for label, result in got.items():
        assert result["closed"] and result["got"] == "", (label, result)
    assert tubid_of_der(bytes.fromhex(got["engine-tls"]["cert"])) == engine_tubid
    assert tubid_of_der(bytes.fromhex(got["client-tls"]["cert"])) == client_tubid

    marker = "ipkernel-lane-marker-" + os.urandom(8).hex()
    client = procs(name_b, [python, "-c", CLIENT, str(security / "ipcontroller-mec.furl"),
                            marker, str(CALLS), LANES_PROBE], tmp_path / "client.log", env)
    done = result_of(client, 120)
    assert done["ids"] == [0, 1]
    assert done["said"] == [marker + str(CALLS - 1)] * 2
    # the client's lanes: TLS to host a, and its blocking calls went on the direct one
    assert done["reactor_lane_tls"] and done["direct_tls"] and done["direct_peer"] == addr_a
    assert done["direct_calls"] >= CALLS + 4
    # each engine has one lane, TLS, and the client's commands arrived on it
    for before, after in zip(done["before"], done["after"]):
        assert len(before) == len(after) == 1, (before, after)
        (calls_before, tls_before), (calls_after, tls_after) = before[0], after[0]
        assert tls_before and tls_after
        assert calls_after - calls_before >= CALLS + 2
    joined = [line for line in controller.output.splitlines() if "a lane joined from" in line]
    assert len([line for line in joined if f"from {addr_b}:" in line and "(TLS)" in line]) \
        == len(joined) >= 4, joined   # two engines, the client's two lanes
    assert all(e.popen.poll() is None for e in engines) and controller.popen.poll() is None

    stop.touch()
    assert capture.wait(WAIT) == 0, capture.output
    captured = frames(capture_file)
    wire = b"".join(captured)
    assert b"GET /id/" + engine_tubid.encode() in wire   # plaintext is seen where it is
    for role, port in ports.items():
        segments = tcp_payloads(captured, port)
        to_port = [payload for inbound, payload in segments if inbound]
        from_port = [payload for inbound, payload in segments if not inbound]
        assert len(to_port) >= 2 and len(from_port) >= 2, (role, len(segments))
        assert to_port[0][:2] == from_port[0][:2] == b"\x16\x03", role  # a TLS handshake
        # the calls went here: at least one TLS record each way per call
        assert len(to_port) >= CALLS and len(from_port) >= CALLS, (role, len(segments))
    assert marker.encode() not in wire
    assert b'"execute"' not in wire and b"said = " not in wire
    assert engine_secret.encode() not in wire and client_secret.encode() not in wire
