"""Test doubles for lanes: a small RemoteInterface and its Referenceable
(``Probe``), and a bare TCP client speaking the lane frame format by hand
(``Raw``, ``frame``, ``parse``).  Shared by the lane tests (plain and TLS).

Importable from any test module (``tests/`` is on ``pythonpath``).
"""
import struct

from foolscap.api import Any, Referenceable, RemoteInterface
from foolscap.schema import IntegerConstraint, UnicodeConstraint
from twisted.internet import defer
from twisted.internet.protocol import Protocol
from zope.interface import implementer

from ipkernel.lane import LaneServer, connect_lane
from ipkernel.serialize import Serialized
from ipkernel.wire import AsJson

from awaiting import within


class RILaneProbe(RemoteInterface):
    __remote_name__ = "RILaneProbe.tests.ipkernel"

    def echo(value=Any()):
        return Any()

    def add(a=IntegerConstraint(), b=IntegerConstraint()):
        return IntegerConstraint()

    def record(n=IntegerConstraint()):
        return IntegerConstraint()

    def later(key=UnicodeConstraint()):
        return Any()

    def fail(message=UnicodeConstraint()):
        return None

    def unsendable():
        return Any()

    def unwritable(which=UnicodeConstraint()):
        return Any()

    def wrong_result():
        return IntegerConstraint()


class ProbeFault(Exception):
    pass


#: Results whose JSON text cannot be written.
UNWRITABLE = {
    "as-json-set": lambda: AsJson({"v": {1, 2}}),
    "as-json-bytes": lambda: AsJson([b"raw"]),
    "metadata-bytes": lambda: Serialized([b"x"], "pickle", {"k": b"v"}),
    "huge-int": lambda: 10 ** 5000,
}


class Growing(list):
    """A list whose growth can be waited for: :meth:`wait` (n) fires (bounded)
    once it holds ``n`` items."""

    def __init__(self):
        super().__init__()
        self._waits = []

    def append(self, item):
        super().append(item)
        ready = [d for n, d in self._waits if len(self) >= n]
        self._waits = [(n, d) for n, d in self._waits if len(self) < n]
        for d in ready:
            d.callback(None)

    def wait(self, n):
        if len(self) >= n:
            return defer.succeed(None)
        d = defer.Deferred()
        self._waits.append((n, d))
        return within(d)


@implementer(RILaneProbe)
class Probe(Referenceable):
    """Records what it was called with; ``later`` answers when the test says so."""

    def __init__(self):
        self.calls = Growing()
        self.seen = []
        self.pending = {}

    def _arrived(self, method):
        self.calls.append(method)

    def wait_calls(self, n):
        """Deferred firing once ``n`` calls have arrived."""
        return self.calls.wait(n)

    def remote_echo(self, value):
        self._arrived("echo")
        return value

    def remote_add(self, a, b):
        self._arrived("add")
        return a + b

    def remote_record(self, n):
        self._arrived("record")
        self.seen.append(n)
        return len(self.seen)

    def remote_later(self, key):
        d = self.pending[key] = defer.Deferred()
        self._arrived("later")
        return d

    def remote_fail(self, message):
        self._arrived("fail")
        raise ProbeFault(message)

    def remote_unsendable(self):
        self._arrived("unsendable")
        return object()

    def remote_unwritable(self, which):
        self._arrived("unwritable")
        return UNWRITABLE[which]()

    def remote_wrong_result(self):
        self._arrived("wrong_result")
        return "not an int"


def lost_event(lane):
    """Deferred firing (bounded) when ``lane`` closes."""
    d = defer.Deferred()
    lane.notifyOnDisconnect(lambda: d.callback(None))
    return within(d)


class Raw(Protocol):
    """A bare TCP client speaking the lane frame format by hand."""

    def __init__(self):
        self.buffer = b""
        self.frames = []
        self._frame_waiters = []
        self.lost = defer.Deferred()

    def dataReceived(self, data):
        self.buffer += data
        while len(self.buffer) >= 8:
            (rest,) = struct.unpack_from("<Q", self.buffer)
            if len(self.buffer) < 8 + rest:
                break
            raw, self.buffer = self.buffer[:8 + rest], self.buffer[8 + rest:]
            self.frames.append(parse(raw))
        while self.frames and self._frame_waiters:
            self._frame_waiters.pop(0).callback(self.frames.pop(0))

    def next_frame(self):
        d = defer.Deferred()
        self._frame_waiters.append(d)
        self.dataReceived(b"")
        return within(d)

    def connectionLost(self, reason):
        self.reason = reason
        self.lost.callback(None)


def frame(kind, call_id, text, buffers=()):
    """One frame, written from the format in the protocol's docstring."""
    sizes = [len(b) for b in buffers]
    body = struct.pack(f"<BIII{len(sizes)}Q", kind, call_id, len(text), len(sizes), *sizes)
    body += text + b"".join(buffers)
    return struct.pack("<Q", len(body)) + body


def parse(raw):
    kind, call_id, text_len, nbufs = struct.unpack_from("<BIII", raw, 8)
    pos = 8 + 13
    sizes = struct.unpack_from(f"<{nbufs}Q", raw, pos)
    pos += 8 * nbufs
    text = raw[pos:pos + text_len]
    pos += text_len
    buffers = []
    for n in sizes:
        buffers.append(raw[pos:pos + n])
        pos += n
    return kind, call_id, text, buffers


class Lanes:
    """A started LaneServer and the lanes joined to it in one test."""

    def __init__(self, server):
        self.server = server
        self.clients = []

    async def join(self, served=None, client_local=None, remote_interface=RILaneProbe,
                   local_path=None):
        """``(client lane, server lane)``: the server side offers ``served``;
        the client joins on the offer's Unix socket, if any, or on
        ``local_path`` if given."""
        joined = []

        def on_join(lane):
            joined.append(lane)
            return served
        port, token, _, offered = self.server.offer(on_join)
        client = await within(connect_lane(
            port, token, local=client_local, remote_interface=remote_interface,
            local_path=offered if local_path is None else local_path))
        self.clients.append(client)
        assert client.joined and len(joined) == 1 and joined[0].joined
        return client, joined[0]


async def started_lanes(local=False):
    """Yields a :class:`Lanes` over a started LaneServer (with its Unix
    socket with ``local``); closes every lane and stops the server
    afterwards (for a fixture)."""
    server = LaneServer()
    server.start(local=local)
    made = Lanes(server)
    try:
        yield made
    finally:
        for client in made.clients:
            client.close()
        await within(server.stop())


def cert_file(tmp_path, name):
    """A new Tub certificate in ``tmp_path/name``; ``(path, its tub id)``."""
    from cryptography import x509
    from cryptography.hazmat.primitives.serialization import Encoding

    from ipkernel import fcutil
    from ipkernel.transport import tls

    pem = fcutil.new_cert_pem()
    path = tmp_path / name
    path.write_text(pem)
    der = x509.load_pem_x509_certificate(pem.encode()).public_bytes(Encoding.DER)
    return str(path), tls.tubid_of_der(der)
