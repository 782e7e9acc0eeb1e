"""Tier 4 (issue 14): a controller, an engine and a client on two hosts.

The two hosts are network namespaces made by ``tests/netns.py``
(``two_hosts()``: ``NAME-a`` at 10.213.I.1, ``NAME-b`` at 10.213.I.2, joined
by a veth pair).  The controller runs in *a* with ``--engine-ip 0.0.0.0
--client-ip 0.0.0.0`` and no location flags; an engine and a client run in
*b*.  The test checks:

* the FURLs name *a*'s address (then loopback), so the engine in *b*
  registers and the client in *b* works: small calls, and a large push and
  pull that travel on the data channel;
* between the hosts everything is authenticated and encrypted: a raw TCP
  peer in *b* without a FURL, token or certificate gets nothing from the
  engine port or the data-channel port (only a refusal, then the connection
  closes); the data port answers a TLS ClientHello with a TLS record and the
  controller's certificate (the one the FURL names); and a packet capture in
  *b* of all the traffic (AF_PACKET) holds the plaintext Foolscap greeting
  (so the capture does see plaintext) but none of the marker the client
  pushed, executed and pulled, and no FURL secret.
"""
import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import awaiting

pytestmark = [pytest.mark.tier4, pytest.mark.timeout(300)]

#: Bound for anything that should happen soon between the namespaces.
WAIT = 60.0
#: Bytes of the large value pushed (and pulled back): the data channel carries it.
BIG = 8 << 20


def wait_for(check, what, timeout=WAIT):
    """Poll ``check()`` until it returns something true (return it), or fail."""
    return awaiting.wait_for(check, what, timeout, 0.1)


class Proc:
    """A process in a namespace (``ip netns exec`` execs it: the pid is its own),
    its output in a file."""

    def __init__(self, namespace, argv, log_path, env=None):
        self.log_path = Path(log_path)
        self.log = open(self.log_path, "wb")
        self.popen = subprocess.Popen(["ip", "netns", "exec", namespace, *argv],
                                      stdin=subprocess.DEVNULL, stdout=self.log,
                                      stderr=subprocess.STDOUT, env=env)

    @property
    def output(self):
        return self.log_path.read_text(errors="replace")

    def wait(self, timeout=WAIT):
        return self.popen.wait(timeout)

    def stop(self, timeout=15):
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(timeout)
        self.log.close()


@pytest.fixture
def procs():
    """Start processes with ``procs(namespace, argv, log_path)``; all are stopped after."""
    started = []

    def start(namespace, argv, log_path, env=None):
        proc = Proc(namespace, argv, log_path, env)
        started.append(proc)
        return proc
    yield start
    for proc in reversed(started):
        proc.stop()
    for proc in started:   # shown by pytest when the test failed
        print(f"----- {proc.popen.args}\n{proc.output[-4000:]}")


@pytest.fixture
def hosts():
    """``(a, b)``: the two namespaces, each ``(name, address)``; removed after."""
    from netns import two_hosts

    with two_hosts() as made:
        yield (made.a, made.addr_a), (made.b, made.addr_b)


def child_env():
    env = dict(os.environ)
    env.pop("IPKERNEL_DIR", None)
    env["PYTHONUNBUFFERED"] = "1"
    return env


def furl_parts(path):
    """``(tubid, [hints], secret)`` of the FURL in ``path``."""
    furl = Path(path).read_text().strip()
    tubid, rest = furl[len("pb://"):].split("@", 1)
    hints, secret = rest.split("/", 1)
    return tubid, hints.split(","), secret


def start_controller(procs, name, tmp_path, *extra):
    """``(process, cluster dir)``: ipcontroller in namespace ``name``
    listening on every address for engines and clients (``extra``: more
    arguments), once ready."""
    cluster = tmp_path / "cluster"
    controller = procs(name, [sys.executable, "-m", "ipkernel.controller", "--cluster-dir",
                              str(cluster), "--engine-ip", "0.0.0.0", "--client-ip", "0.0.0.0",
                              *extra],
                       tmp_path / "controller.log", child_env())
    wait_for(lambda: "ipcontroller ready" in controller.output or controller.popen.poll()
             is not None, "the controller to be ready")
    assert controller.popen.poll() is None, controller.output
    return controller, cluster


def start_engine(procs, name, tmp_path, security, label="engine"):
    """An ipengine in namespace ``name`` registering with the controller
    whose FURLs are in ``security``; returned once it is ready (or failed)."""
    engine = procs(name, [sys.executable, "-m", "ipkernel.engine", "--cluster-dir",
                          str(tmp_path / f"{label}-dir"), "--furl-file",
                          str(security / "ipcontroller-engine.furl")],
                   tmp_path / f"{label}.log", child_env())
    wait_for(lambda: "ipengine ready" in engine.output or engine.popen.poll() is not None,
             f"{label} in {name} to register")
    assert "ipengine ready: registered as engine" in engine.output, engine.output
    return engine


def ports_of(controller_output):
    """The data-channel ports from the controller's log: ``{role: port}``."""
    for line in controller_output.splitlines():
        if "data channel: client port" in line:
            words = line.split()
            return {"client": int(words[words.index("client") + 2].rstrip(",")),
                    "engine": int(words[words.index("engine") + 2])}
    raise AssertionError(f"no data-channel ports in:\n{controller_output}")


#: Captures every frame on every interface of its namespace (AF_PACKET) into
#: a file, from when it writes its "ready" file until its "stop" file appears
#: (or a time limit).
CAPTURE = textwrap.dedent("""
    import os, select, socket, struct, sys, time
    out, ready, stop, limit = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4])
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(3))
    try:
        s.setsockopt(socket.SOL_SOCKET, 33, 64 << 20)  # SO_RCVBUFFORCE (root)
    except OSError:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 << 20)
    open(ready, "w").close()
    deadline = time.monotonic() + limit
    with open(out, "wb") as f:
        while time.monotonic() < deadline and not os.path.exists(stop):
            if select.select([s], [], [], 0.1)[0]:
                frame = s.recv(1 << 18)
                f.write(struct.pack("!I", len(frame)) + frame)
    s.close()
""")

#: A client in the other namespace: small calls, a large push and pull with
#: the marker, and what its data channel is.  Prints one JSON line.
CLIENT = textwrap.dedent("""
    import json, sys
    from ipkernel import client
    furl_file, marker = sys.argv[1], sys.argv[2].encode()
    mec = client.MultiEngineClient(furl_file, timeout=60)
    out = {"ids": mec.get_ids()}
    mec.execute("x = 6 * 7")
    out["x"] = mec.pull("x")
    mec.execute("said = %r" % marker.decode())
    big = marker * (int(sys.argv[3]) // len(marker))
    mec.push({"big": big})
    mec.execute("count = big.count(%r)" % marker)
    out["count"], out["expected"] = mec.pull("count")[0], big.count(marker)
    back = mec.pull("big")[0]
    out["back_equal"] = back == big
    fc = mec._holder[0]
    peer = getattr(fc, "data", None)
    out["data_channel_sealed"] = peer is not None and type(peer.sock).__name__ == "SealedSocket"
    out["data_host"] = getattr(peer, "host", None)
    mec.close()
    print("RESULT " + json.dumps(out), flush=True)
""")

#: A raw peer: connects to HOST:PORT and sends MODE's bytes ("nothing", "junk",
#: "tls": a ClientHello, the handshake without checking the certificate, then
#: a made-up token); prints what it got back as JSON.
RAW = textwrap.dedent("""
    import json, socket, ssl, struct, sys, time
    host, port, mode = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    s = socket.create_connection((host, port), timeout=10)
    s.settimeout(float(sys.argv[4]))
    out = {"mode": mode}
    def drain(read):
        got, closed = b"", False
        try:
            while True:
                chunk = read()
                if not chunk:
                    closed = True
                    break
                got += chunk
        except (socket.timeout, TimeoutError):
            pass
        except (ConnectionResetError, ssl.SSLError, OSError):
            closed = True
        return got, closed
    if mode == "junk":
        s.sendall(b"GET / HTTP/1.0\\r\\n\\r\\n" + bytes(range(256)) * 16)
    if mode in ("nothing", "junk"):
        got, out["closed"] = drain(lambda: s.recv(65536))
        out["got"] = got.decode("latin-1")
    else:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
        incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
        tls = ctx.wrap_bio(incoming, outgoing)
        first = b""
        while True:
            try:
                tls.do_handshake()
                break
            except ssl.SSLWantReadError:
                s.sendall(outgoing.read())
                data = s.recv(65536)
                if not data:
                    raise SystemExit("closed during the handshake")
                first = first or data
                incoming.write(data)
        s.sendall(outgoing.read())
        out["first"] = first[:3].hex()
        out["cert"] = tls.getpeercert(binary_form=True).hex()
        token = b"x" * int(sys.argv[5])
        tls.write(bytes.fromhex(sys.argv[6]) + token)
        s.sendall(outgoing.read())
        def read():
            while True:
                try:
                    return tls.read(65536)
                except ssl.SSLWantReadError:
                    data = s.recv(65536)
                    if not data:
                        return b""
                    incoming.write(data)
        got, out["closed"] = drain(read)
        out["got"] = got.hex()
    print("RESULT " + json.dumps(out), flush=True)
""")


def result_of(proc, timeout=WAIT):
    assert proc.wait(timeout) == 0, proc.output
    line = next((li for li in proc.output.splitlines() if li.startswith("RESULT ")), None)
    assert line is not None, proc.output
    return json.loads(line[len("RESULT "):])


def frames(path):
    """The frames of a capture file, as a list of bytes."""
    data = Path(path).read_bytes()
    found, at = [], 0
    while at + 4 <= len(data):
        size = int.from_bytes(data[at:at + 4], "big")
        found.append(data[at + 4:at + 4 + size])
        at += 4 + size
    return found


def test_engine_and_client_on_another_host_authenticated_and_encrypted(hosts, procs,
                                                                       tmp_path):
    from ipkernel.datachannel import frames as dc_frames
    from ipkernel.transport.tls import tubid_of_der

    (name_a, addr_a), (name_b, addr_b) = hosts
    python, env = sys.executable, child_env()
    controller, cluster = start_controller(procs, name_a, tmp_path)
    security = cluster / "security"

    # The FURLs name host a's address, then loopback (no location flags given).
    engine_tubid, engine_hints, engine_secret = furl_parts(security / "ipcontroller-engine.furl")
    _, client_hints, client_secret = furl_parts(security / "ipcontroller-mec.furl")
    for found in (engine_hints, client_hints):
        port = found[0].rsplit(":", 1)[1]
        assert found == [f"tcp:{addr_a}:{port}", f"tcp:127.0.0.1:{port}"]
    engine_port = int(engine_hints[0].rsplit(":", 1)[1])
    data_ports = ports_of(controller.output)
    assert "listening for engines beyond loopback" in controller.output

    # Everything on the wire in namespace b, from before the first byte.
    capture_file, ready, stop = tmp_path / "b.pcap", tmp_path / "ready", tmp_path / "stop"
    capture = procs(name_b, [python, "-c", CAPTURE, str(capture_file), str(ready), str(stop),
                             "240"], tmp_path / "capture.log", env)
    wait_for(ready.exists, "the capture to start")

    # An engine in namespace b registers with the controller in a.
    engine = start_engine(procs, name_b, tmp_path, security)
    assert "ipengine ready: registered as engine 0" in engine.output, engine.output
    assert f"registered engine 0 (ip={addr_b}" in controller.output
    assert f"joined the data channel at {addr_a}:{data_ports['engine']}" in engine.output

    # Raw peers in b without FURL, token or certificate get nothing.
    token_header = dc_frames.header(dc_frames.AUTH, body_length=dc_frames.TOKEN_SIZE)
    raw = {}
    for label, port, mode in (("engine-nothing", engine_port, "nothing"),
                              ("engine-junk", engine_port, "junk"),
                              ("data-junk", data_ports["engine"], "junk"),
                              ("data-tls", data_ports["engine"], "tls"),
                              ("client-data-tls", data_ports["client"], "tls")):
        raw[label] = procs(name_b, [python, "-c", RAW, addr_a, str(port), mode, "30",
                                    str(dc_frames.TOKEN_SIZE), token_header.hex()],
                           tmp_path / f"raw-{label}.log", env)
    got = {label: result_of(proc, 90) for label, proc in raw.items()}
    # Foolscap's port: silence gets silence, then closed at its negotiation deadline;
    # junk gets one refusal line (no identity, no object), then closed.
    assert got["engine-nothing"] == {"mode": "nothing", "closed": True, "got": ""}
    assert got["engine-junk"]["closed"]
    assert got["engine-junk"]["got"].startswith("HTTP/1.1 500 ")
    assert got["engine-junk"]["got"].count("\n") == 2
    assert engine_tubid not in got["engine-junk"]["got"]
    # The data port: junk (no TLS) is closed with nothing sent; TLS is answered with a TLS
    # handshake record and the controller's certificate, and a made-up token gets nothing.
    assert got["data-junk"]["closed"] and got["data-junk"]["got"] == ""
    for label in ("data-tls", "client-data-tls"):
        assert got[label]["first"].startswith("1603"), got[label]   # handshake, TLS 1.x
        assert got[label]["closed"] and got[label]["got"] == "", got[label]
    assert tubid_of_der(bytes.fromhex(got["data-tls"]["cert"])) == engine_tubid

    # A client in namespace b: small calls, and a large push and pull on the data channel.
    marker = "ipkernel-plaintext-marker-" + os.urandom(8).hex()
    client = procs(name_b, [python, "-c", CLIENT, str(security / "ipcontroller-mec.furl"),
                            marker, str(BIG)], tmp_path / "client.log", env)
    done = result_of(client, 120)
    assert done["ids"] == [0] and done["x"] == [42]
    assert done["count"] == done["expected"] == BIG // len(marker) and done["back_equal"]
    assert done["data_channel_sealed"] and done["data_host"] == addr_a
    assert engine.popen.poll() is None and controller.popen.poll() is None

    stop.touch()
    assert capture.wait(WAIT) == 0, capture.output
    captured = frames(capture_file)
    wire = b"".join(captured)
    # The capture saw the traffic (the push and the pull went both ways across b's link)
    # and sees plaintext where there is some: Foolscap's greeting before its TLS.
    assert len(wire) > 2 * BIG, f"captured only {len(wire)} bytes in {len(captured)} frames"
    assert b"GET /id/" + engine_tubid.encode() in wire
    # Nothing the client sent or got is readable on the wire, nor any FURL secret.
    assert marker.encode() not in wire
    assert engine_secret.encode() not in wire and client_secret.encode() not in wire
