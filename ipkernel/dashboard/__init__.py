"""The controller's live dashboard in the browser.

:class:`Dashboard` serves it for a running controller node: a
:class:`~ipkernel.dashboard.collector.ClusterWatch` reads the node's state,
a :class:`~ipkernel.dashboard.web.DashboardSite` serves the page, the JSON
API and the live stream behind an unguessable token.  On loopback it is
plain HTTP; on any other address HTTPS with the controller's certificate.
"""
import ipaddress
import socket

from twisted.internet import defer
from twisted.logger import Logger

from ipkernel.dashboard.collector import ClusterWatch
from ipkernel.dashboard.web import DashboardSite, new_token, url_for

log = Logger()

__all__ = ["Dashboard", "ClusterWatch", "DashboardSite", "new_token"]


def _is_loopback(ip):
    try:
        return ipaddress.ip_address(ip).is_loopback
    except ValueError:
        return ip == "localhost"


class Dashboard:
    """The dashboard of ``node`` on ``ip``:``port`` (0: a free port).

    ``cert_file``: a PEM file with a certificate and its key (the
    controller's), required beyond loopback, where the dashboard is served
    over TLS.  :meth:`start` listens and returns the URL (with the token);
    :meth:`stop` closes the port and every page's connection.
    """

    def __init__(self, node, ip="127.0.0.1", port=0, reactor=None, cert_file=None, token=None):
        if reactor is None:
            from twisted.internet import reactor
        self.node = node
        self.ip = ip
        self.wanted_port = port
        self.reactor = reactor
        self.cert_file = cert_file
        self.token = token or new_token()
        self.tls = not _is_loopback(ip)
        self.watch = ClusterWatch(node, clock=reactor)
        self.site = None
        self.listening = None
        self.url = None
        #: the SHA-256 fingerprint of the TLS certificate (``AB:CD:...``, as
        #: browsers show it), or None on loopback
        self.fingerprint = None

    @property
    def port(self):
        return self.listening.getHost().port if self.listening is not None else None

    def start(self):
        """Listen; the dashboard's URL.  CannotListenError when the port is taken."""
        self.site = DashboardSite(self.watch, self.token, clock=self.reactor, tls=self.tls)
        if self.tls:
            if self.cert_file is None:
                raise ValueError("a dashboard beyond loopback needs the controller's "
                                 "certificate (cert_file) for TLS")
            from twisted.internet import ssl
            with open(self.cert_file, "rb") as f:
                cert = ssl.PrivateCertificate.loadPEM(f.read())
            options = cert.options()
            self.fingerprint = cert.digest("sha256").decode()
            self.listening = self.reactor.listenSSL(self.wanted_port, self.site, options,
                                                    interface=self.ip)
        else:
            self.listening = self.reactor.listenTCP(self.wanted_port, self.site,
                                                    interface=self.ip)
        self.watch.start()
        host = self.ip
        if host in ("0.0.0.0", "::"):
            host = socket.gethostname()
        self.url = url_for("https" if self.tls else "http", host, self.port, self.token)
        return self.url

    def stop(self):
        """Stop serving; a Deferred that fires once the port is closed."""
        self.watch.stop()
        if self.site is not None:
            self.site.close()
        listening, self.listening = self.listening, None
        if listening is None:
            return defer.succeed(None)
        return defer.maybeDeferred(listening.stopListening)
