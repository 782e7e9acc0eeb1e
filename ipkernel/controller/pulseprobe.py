"""The controller's side of engine pulses: asks a late engine's pulse process how it is.

:class:`PulseProber` owns one UDP socket per address family, on the
loopback interface for engines on this host and on every interface for the
others (each opened when first needed, on an ephemeral port) and sends authenticated requests to
pulse processes (:mod:`ipkernel.engine.pulse_child`).  Datagrams that are
not the valid answer to a request it is waiting for are ignored.
"""
import ipaddress
import os

from twisted.internet import defer, protocol
from twisted.logger import Logger

from ipkernel.engine import pulse_child

log = Logger()

#: How long to wait for a pulse's answer (the request is sent twice meanwhile).
DEFAULT_WAIT = 1.0


class PulseAddress:
    """Where and how to ask one engine's pulse."""

    __slots__ = ("host", "port", "key")

    def __init__(self, host, port, key):
        self.host, self.port, self.key = host, port, key

    @classmethod
    def from_offer(cls, host, offer):
        """From an engine's ``pulse()`` answer (``["udp", port, key hex]``); None if
        it has none or it is malformed."""
        if not host or not isinstance(offer, (list, tuple)) or len(offer) != 3:
            return None
        kind, port, key = offer
        try:
            port, key = int(port), bytes.fromhex(key)
        except (TypeError, ValueError):
            return None
        if kind != "udp" or not 0 < port < 65536 or len(key) != pulse_child.KEY_SIZE:
            return None
        return cls(host, port, key)

    def __repr__(self):  # never shows the key
        return f"PulseAddress({self.host!r}, {self.port})"


def _interface_for(host):
    try:
        loopback = ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if ":" in host:
        return "::1" if loopback else "::"
    return "127.0.0.1" if loopback else ""


class _Socket(protocol.DatagramProtocol):
    def __init__(self, prober):
        self.prober = prober

    def datagramReceived(self, data, addr):
        self.prober._received(data)


class PulseProber:
    """Asks pulse processes about their engines; see the module doc."""

    def __init__(self, reactor=None):
        if reactor is None:
            from twisted.internet import reactor
        self.reactor = reactor
        self._ports = {}    # interface -> listening UDP port
        self._waiting = {}  # nonce -> (address, Deferred, [delayed calls])

    def _port_for(self, host):
        # Engines on this host are asked from a loopback-only socket.
        interface = _interface_for(host)
        port = self._ports.get(interface)
        if port is None:
            port = self._ports[interface] = self.reactor.listenUDP(0, _Socket(self),
                                                                   interface=interface)
        return port

    def ask(self, address, wait=DEFAULT_WAIT):
        """A Deferred of ``(state, cpu_ticks)`` from the pulse at ``address``, or of
        None when it does not answer within ``wait`` seconds."""
        nonce = os.urandom(pulse_child.NONCE_SIZE)
        request = pulse_child.make_request(address.key, nonce)
        d = defer.Deferred()
        calls = [self.reactor.callLater(wait / 2, self._send, address, request),
                 self.reactor.callLater(wait, self._finish, nonce, None)]
        self._waiting[nonce] = (address, d, calls)
        self._send(address, request)
        return d

    def _send(self, address, request):
        try:
            self._port_for(address.host).write(request, (address.host, address.port))
        except Exception as exc:  # no route, bad address: it just goes unanswered
            log.debug("cannot send to the pulse at {host}:{port}: {why}", host=address.host,
                      port=address.port, why=exc)

    def _received(self, data):
        nonce = data[len(pulse_child.ANSWER):len(pulse_child.ANSWER) + pulse_child.NONCE_SIZE]
        entry = self._waiting.get(nonce)
        if entry is None:
            return
        answer = pulse_child.check_answer(entry[0].key, data)
        if answer is not None:
            self._finish(nonce, answer[1:])

    def _finish(self, nonce, outcome):
        entry = self._waiting.pop(nonce, None)
        if entry is None:
            return
        _, d, calls = entry
        for call in calls:
            if call.active():
                call.cancel()
        d.callback(outcome)

    def close(self):
        """Stop waiting (pending asks get None) and close the sockets."""
        for nonce in list(self._waiting):
            self._finish(nonce, None)
        ports, self._ports = self._ports, {}
        return defer.gatherResults([defer.maybeDeferred(p.stopListening)
                                    for p in ports.values()])
