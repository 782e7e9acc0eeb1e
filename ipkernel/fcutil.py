"""The one place that creates Foolscap Tubs and handles their files.

* :func:`make_tub`: a Tub with ipkernel's options (remote exceptions arrive
  as ``RemoteException``, no third-party introductions), its certificate
  kept in a 0600 file when one is named.  Its ``tcp:`` hints that name an
  IP address are dialled directly (:class:`DirectTCPHints`), and its
  connections share one TLS context (:class:`SharedContextNegotiation`).
* :func:`listen`: listen on a host/port (0 picks a free port without the
  deprecated ``tcp:0`` + ``getPortnum``) and set the location hints
  (:func:`location_hints`: on ``0.0.0.0``/``::`` this host's addresses,
  loopback last); returns the port so it can be remembered for the next
  start.  :func:`listen_problem` words a failure to listen.
* :func:`register`: register a Referenceable and write its FURL file
  atomically, mode 0600, reusing the old FURL's name when asked.
* :func:`find_furl`: a FURL, or the FURL in a file, with errors that say what
  is wrong.
* :func:`redacted_furl` / :func:`redact_furls`: a FURL (or a text) without the
  secret part of its FURLs, for reprs and logs.
"""
import datetime
import errno
import os
import re
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from foolscap import crypto as foolscap_crypto, negotiate
from foolscap.api import Tub
from foolscap.connections import tcp as foolscap_tcp
from foolscap.ipb import IConnectionHintHandler, InvalidHintError
from foolscap.referenceable import SturdyRef
from twisted.internet import defer, endpoints, task
from twisted.internet.abstract import isIPAddress, isIPv6Address
from twisted.internet.interfaces import IStreamClientEndpoint, IStreamServerEndpoint
from zope.interface import implementer

from ipkernel import hostaddrs
from ipkernel.clusterdir import write_private_file
from ipkernel.error import SecurityError

TUB_OPTIONS = {
    "expose-remote-exception-types": False,
    "accept-gifts": False,
}


def load_or_create_cert(cert_file):
    """Return the PEM certificate (with key) in ``cert_file``, creating it if missing.

    A new file is written with mode 0600; an existing one readable by others
    is tightened to 0600.
    """
    path = Path(cert_file)
    if path.exists():
        if path.stat().st_mode & 0o077:
            os.chmod(path, 0o600)
        return path.read_text()
    pem = new_cert_pem()
    write_private_file(path, pem)
    return pem


def new_cert_pem():
    """A new self-signed certificate with its key (PEM text) for a Tub.

    An elliptic-curve key (P-256) rather than Foolscap's default RSA-2048:
    made in about a hundredth of the time, which is most of what starting
    an engine or a controller costs besides imports.
    """
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "ipkernel")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=365 * 30))
            .sign(key, hashes.SHA256()))
    return (cert.public_bytes(serialization.Encoding.PEM)
            + key.private_bytes(serialization.Encoding.PEM,
                                serialization.PrivateFormat.TraditionalOpenSSL,
                                serialization.NoEncryption())).decode("ascii")


#: Seconds a hint naming one of this host's own (non-loopback) addresses waits
#: when the same FURL also has a loopback hint for that port (see DirectTCPHints).
OWN_ADDRESS_DELAY = 1.0


@implementer(IConnectionHintHandler)
class DirectTCPHints:
    """Foolscap's handler of ``tcp:HOST:PORT`` hints, minus the name lookup
    for a HOST that is an IP address.

    Foolscap's own handler resolves every host, IP addresses included, with
    ``getaddrinfo`` in the reactor's thread pool (started for it on first
    use); an address needs no lookup, so it is dialled at once.  Host names
    still go to Foolscap's handler.

    A controller listening on every address writes hints for this host's
    addresses and loopback last.  Foolscap dials every hint at once, the
    last first, and keeps the first connection that negotiates; a peer on
    the controller's own host must win on loopback (only loopback peers get
    lanes and plain-TCP data channels).  So a hint naming one of this host's
    own non-loopback addresses, for a port that was just dialled on
    loopback, waits :data:`OWN_ADDRESS_DELAY` seconds first (and is
    abandoned when loopback wins meanwhile).
    """

    def __init__(self):
        self._names = foolscap_tcp.default()
        self._loopback_dialled = {}   # port -> when a loopback hint for it was dialled

    def hint_to_endpoint(self, hint, reactor, update_status):
        kind, _, rest = hint.partition(":")
        host, _, port = rest.rpartition(":")
        host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
        if kind != "tcp":
            raise InvalidHintError("not a tcp hint")
        if isIPAddress(host) and port.isdigit():
            endpoint = endpoints.TCP4ClientEndpoint(reactor, host, int(port))
        elif isIPv6Address(host) and port.isdigit():
            endpoint = endpoints.TCP6ClientEndpoint(reactor, host, int(port))
        else:
            return self._names.hint_to_endpoint(hint, reactor, update_status)
        now = reactor.seconds()
        if hostaddrs.is_loopback(host):
            self._loopback_dialled[int(port)] = now
        elif now - self._loopback_dialled.get(int(port), -1e9) < OWN_ADDRESS_DELAY \
                and hostaddrs.is_own_address(host):
            endpoint = _DelayedEndpoint(endpoint, reactor, OWN_ADDRESS_DELAY)
        return endpoint, host

    def describe(self):
        return "tcp"


@implementer(IStreamClientEndpoint)
class _DelayedEndpoint:
    """A client endpoint that connects ``delay`` seconds after being asked
    (cancelling it before then dials nothing)."""

    def __init__(self, inner, reactor, delay):
        self.inner = inner
        self.reactor = reactor
        self.delay = delay

    def connect(self, factory):
        d = task.deferLater(self.reactor, self.delay, lambda: None)
        return d.addCallback(lambda _: self.inner.connect(factory))


def tcp_connections(tub):
    """How many TCP connections ``tub`` (made by :func:`make_tub`) has made
    out so far: a peer answered at the TCP level, so a caller can tell
    "nobody is there" from "slow to negotiate"."""
    return getattr(tub, "_ipkernel_tcp_connections", 0)


#: Seconds a peer has to finish Foolscap's negotiation (TLS included) on a
#: port this process listens on (Foolscap's own deadline is 120 s).
NEGOTIATION_DEADLINE = 20
#: Connections one peer address may have negotiating on one port at once.
MAX_NEGOTIATING_PER_PEER = 32


class SharedContextNegotiation(negotiate.Negotiation):
    """Foolscap's connection negotiation, with one TLS context per Tub, a
    shorter login deadline and a bound on half-open connections.

    Foolscap makes new TLS options (and so a new OpenSSL context, with its
    cipher list worked out anew) for every connection, a few milliseconds
    of CPU on each side; here a Tub's connections share the options made
    for its certificate.  The context is the same one Foolscap would make:
    the peer's certificate is asked for, and checked against the FURL's
    tub id after the handshake, as before.

    On the listening side a connection must finish negotiating within
    :data:`NEGOTIATION_DEADLINE` seconds, and one peer address may have at
    most :data:`MAX_NEGOTIATING_PER_PEER` connections negotiating on a port:
    a new one beyond that closes the oldest (a peer with a FURL negotiates
    in milliseconds, so a flood of idle connections cannot lock it out).
    """

    SERVER_TIMEOUT = NEGOTIATION_DEADLINE
    _counted = None  # (the listener's table, peer host) while negotiating

    def connectionMadeClient(self):
        self.tub._ipkernel_tcp_connections = tcp_connections(self.tub) + 1
        return super().connectionMadeClient()

    def connectionMadeServer(self):
        host = getattr(self.transport.getPeer(), "host", None)
        table = self.listener.__dict__.setdefault("_ipkernel_negotiating", {})
        negotiating = table.setdefault(host, {})
        negotiating[self] = None  # a dict keeps the order they came in
        self._counted = (table, host)
        if len(negotiating) > MAX_NEGOTIATING_PER_PEER:
            oldest = next(iter(negotiating))
            oldest._negotiation_over()
            oldest.transport.abortConnection()
        super().connectionMadeServer()

    def _negotiation_over(self):
        counted, self._counted = self._counted, None
        if counted is not None:
            table, host = counted
            table[host].pop(self, None)
            if not table[host]:
                del table[host]

    def switchToBanana(self, params):
        self._negotiation_over()
        return super().switchToBanana(params)

    def connectionLost(self, reason):
        self._negotiation_over()
        return super().connectionLost(reason)

    def startTLS(self, cert):
        if cert is None:
            return super().startTLS(cert)
        self.log("startTLS, client=%s" % self.isClient)
        self.transport.startTLS(tls_options(self.tub, cert))


class _SharedContextOptions(foolscap_crypto.FoolscapContextFactory):
    """Foolscap's TLS options, whose context (made once) serves every connection."""

    _context_made = None

    def getContext(self):
        # Foolscap's getContext changes the context each time, which OpenSSL
        # refuses once a connection used it.
        if self._context_made is None:
            self._context_made = super().getContext()
        return self._context_made


def tls_options(tub, cert=None):
    """The TLS options ``tub``'s connections use (made once per certificate)."""
    cert = cert if cert is not None else tub.myCertificate
    made = getattr(tub, "_ipkernel_tls_options", None)
    if made is None or made[0] is not cert:
        options = _SharedContextOptions(
            privateKey=cert.privateKey.original, certificate=cert.original)
        made = tub._ipkernel_tls_options = (cert, options)
    return made[1]


def make_tub(cert_file=None, cert_data=None, options=None):
    """Return a new (not yet started) Tub with ipkernel's options.

    ``cert_file`` keeps its identity across restarts (so FURLs stay valid);
    ``cert_data`` gives it directly (tests use a pool of pre-made certs);
    with neither the Tub gets a fresh identity.
    """
    if cert_file is not None:
        cert_data = load_or_create_cert(cert_file)
    tub = Tub(certData=cert_data if cert_data is not None else new_cert_pem())
    tub.addConnectionHintHandler("tcp", DirectTCPHints())
    tub.negotiationClass = SharedContextNegotiation
    tls_options(tub).getContext()   # now, not while the first connection waits
    for name, value in {**TUB_OPTIONS, **(options or {})}.items():
        tub.setOption(name, value)
    return tub


@implementer(IStreamServerEndpoint)
class _RecordingEndpoint:
    """A server endpoint that remembers the port it ended up listening on."""

    def __init__(self, inner):
        self.inner = inner
        self.port = defer.Deferred()

    def listen(self, factory):
        d = self.inner.listen(factory)

        def record(listening_port):
            if not self.port.called:
                self.port.callback(listening_port.getHost().port)
            return listening_port

        def failed(failure):
            if not self.port.called:
                self.port.errback(failure)
                return None  # reported through self.port; do not log it twice
            return failure
        return d.addCallbacks(record, failed)


#: Hosts that mean "every address of this host".
WILDCARDS = ("", "0.0.0.0", "::")


def is_wildcard(host):
    """True for a listening host that means every address (``0.0.0.0``, ``::``)."""
    return host in WILDCARDS


def location_hints(host, port, location=None):
    """The ``tcp:`` hints (a list) for a Tub listening on ``host:port``.

    ``location`` (a host name or address peers should dial) wins; a specific
    ``host`` is its own hint; on every address (``0.0.0.0``: IPv4, ``::``:
    IPv6 and IPv4) the hints are this host's non-loopback addresses of
    those families (see :mod:`ipkernel.hostaddrs`), then loopback, so peers
    on other hosts and on this one both find it.
    """
    if location:
        names = [location]
    elif not is_wildcard(host):
        names = [host]
    else:
        version = 4 if host in ("", "0.0.0.0") else None
        names = hostaddrs.addresses(version, loopback=False)
        names.append("127.0.0.1")
    return [f"tcp:[{n}]:{port}" if isIPv6Address(n) else f"tcp:{n}:{port}" for n in names]


async def listen(tub, reactor, host="127.0.0.1", port=0, location=None):
    """Make the (running) ``tub`` listen on ``host:port`` and set its location.

    ``port=0`` picks a free port.  ``location`` is the host peers should
    dial; by default the hints are :func:`location_hints` (``host``, or on
    ``0.0.0.0``/``::`` this host's addresses, loopback last).  Returns the
    port number.  A failure to listen raises Twisted's ``CannotListenError``
    (see :func:`listen_problem` for what to tell the user).
    """
    if isIPv6Address(host) or host == "::":
        inner = endpoints.TCP6ServerEndpoint(reactor, port, interface=host)
    else:
        inner = endpoints.TCP4ServerEndpoint(reactor, port, interface=host)
    recorder = _RecordingEndpoint(inner)
    tub.listenOn(recorder)
    actual = await recorder.port
    tub.setLocation(*location_hints(host, actual, location))
    return actual


def listen_problem(error, host, port, option, port_flag=None):
    """Words for a failure (an ``OSError``) to listen on ``host:port``,
    set with ``--OPTION-ip`` and ``port_flag`` (default ``--OPTION-port``):
    what went wrong and which flag to change."""
    in_furl = port_flag is None   # the Tub's port is in the FURLs, a data port is not
    port_flag = port_flag or f"--{option}-port"
    number = getattr(error, "errno", None)
    if number == errno.EADDRNOTAVAIL:
        own = ", ".join(hostaddrs.addresses()) or "none found"
        return (f"this host has no address {host} (so nothing can listen there); its addresses "
                f"are {own}: pass --{option}-ip one of them, or 0.0.0.0 for every address")
    if number == errno.EADDRINUSE:
        stale = " (FURLs of an earlier run then stop working)" if in_furl else ""
        return (f"port {port} on {host} is in use (another controller, or another program?): "
                f"{port_flag} 0 picks a free port{stale}, or stop what holds it")
    if number == errno.EACCES:
        return (f"no permission to listen on port {port} of {host} (ports below 1024 need "
                f"privileges): choose another {port_flag}")
    return (f"{getattr(error, 'strerror', None) or error} (--{option}-ip and {port_flag} "
            f"choose the address and the port)")


def peer_of(rref):
    """``"host:port"`` of the far end of a RemoteReference's connection, or None."""
    try:
        address = rref.getPeer()
        return f"{address.host}:{address.port}"
    except Exception:  # noqa: B902 - not a TCP connection (a loopback broker in tests)
        return None


def furl_locations(furl):
    """The ``HOST:PORT`` locations a FURL's hints name (no secret), as a list."""
    hints = furl.split("@", 1)[-1].split("/", 1)[0]
    return [h[4:] if h.startswith("tcp:") else h for h in hints.split(",") if h]


def register(tub, ref, furl_file=None, reuse=False):
    """Register ``ref`` with ``tub`` and return its FURL.

    With ``furl_file`` the FURL is written there (atomically, mode 0600).
    With ``reuse`` and an existing file from the same Tub identity, the old
    FURL's name is kept so clients holding it can still connect.
    """
    name = None
    if reuse and furl_file is not None and Path(furl_file).exists():
        old = SturdyRef(Path(furl_file).read_text().strip())
        if old.tubID != tub.getTubID():
            raise SecurityError(
                f"cannot reuse the FURL in {furl_file}: it belongs to another controller "
                f"identity; delete it (or start without -r) to get a new FURL")
        name = old.name
    furl = tub.registerReference(ref, name=name)
    if furl_file is not None:
        write_private_file(furl_file, furl + "\n", durable=False)
    return furl


#: A FURL inside a text: ``pb://TUBID@LOCATION_HINTS/SWISSNUM``.
_FURL_IN_TEXT = re.compile(
    r"pb://(?P<tubid>[^@/\s'\"<>]*)@(?P<hints>[^/\s'\"<>]*)/(?P<name>[^\s'\"<>()\[\]{},;\\]+)")
#: Characters of the tub id that a redacted FURL keeps.
TUBID_SHOWN = 8
#: What stands for the parts of a FURL that are left out.
ELLIPSIS = "..."


def _redact_match(match):
    tubid = match["tubid"]
    if len(tubid) > TUBID_SHOWN:
        tubid = tubid[:TUBID_SHOWN] + ELLIPSIS
    return f"pb://{tubid}@{match['hints']}/{ELLIPSIS}"


def redacted_furl(furl):
    """``furl`` as it may be shown: without its secret part.

    A FURL (``pb://TUBID@LOCATION_HINTS/SWISSNUM``) is a capability: whoever
    knows the swissnum (the name after the last ``/``) may use the object.
    What a repr, a log line or an error message shows is the start of the
    tub id (which only names the controller's certificate) and the location
    hints, for example ``pb://o33gyjsq...@tcp:127.0.0.1:41234/...``.

    :param furl: a FURL, or any text: every FURL inside it is redacted (a
        file name or a text without FURLs comes back unchanged).  ``None``
        gives ``None``.
    :returns: the redacted text (a :class:`str`).  Redacting twice changes
        nothing more.
    """
    if furl is None:
        return None
    return redact_furls(str(furl))


def redact_furls(text):
    """``text`` with the secret part of every FURL in it left out (see
    :func:`redacted_furl`).  The programs' log observers pass every line
    through it (:func:`ipkernel.applog.observer_for`)."""
    if "pb://" not in text:
        return text
    return _FURL_IN_TEXT.sub(_redact_match, text)


def is_valid_furl(text):
    """True when ``text`` looks like a Foolscap FURL (``pb://tubid@hints/name``)."""
    if not isinstance(text, str) or not text.startswith("pb://"):
        return False
    try:
        SturdyRef(text)
    except Exception:
        return False
    return True


def tubid_of_furl(furl):
    """The tub id (the certificate's hash) named by ``furl``."""
    return SturdyRef(furl).getTubRef().getTubID()


def _shown_furl(text):
    """What an error may show of a FURL that may be malformed: redacted, or,
    when it is too broken to find its secret part, only its start."""
    shown = redact_furls(text)
    return shown if shown != text else f"pb://{ELLIPSIS}"


def find_furl(furl_or_file):
    """Return the FURL given, or the one stored in the file named.

    Raises ValueError that says which file or FURL was wrong and why.
    """
    if furl_or_file is None:
        raise ValueError("no FURL or FURL file given")
    text = os.fspath(furl_or_file)
    if text.startswith("pb://"):
        if is_valid_furl(text):
            return text
        raise ValueError(f"{_shown_furl(text)!r} is not a valid FURL (expected "
                         f"pb://TUBID@tcp:HOST:PORT/NAME)")
    path = Path(text).expanduser()
    if not path.exists():
        raise ValueError(f"FURL file {str(path)!r} does not exist: is the controller running, and "
                         f"is this the right cluster directory?")
    content = path.read_text().strip()
    if not is_valid_furl(content):
        raise ValueError(f"FURL file {str(path)!r} does not hold a valid FURL")
    return content
