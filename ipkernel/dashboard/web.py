"""The dashboard's web side: pages, a JSON API and a live stream, with ``twisted.web``.

Every request must carry the dashboard's token: ``?token=...`` in the URL
(the URL in ``security/ipcontroller-dashboard.url`` has it), the cookie the
first page load sets, or an ``Authorization: token ...`` header (scripts).
Without it: 403 and nothing else.

* ``/``: the page (``static/index.html``); ``/static/...``: its scripts,
  styles and the vendored charting library;
* ``/api/snapshot``: everything at once (JSON); ``/api/engines``,
  ``/api/tasks``, ``/api/clients``, ``/api/errors``: one part each;
* ``/api/events``: server-sent events: a ``snapshot`` event first (all of
  it), then an ``update`` event when something changed, at most every
  :data:`PUSH_EVERY` seconds (a comment every :data:`KEEPALIVE` seconds
  otherwise).  An update is a snapshot whose histories and errors hold only
  the entries that came since the previous event: the page appends them.

One update is made per push for all the pages watching (and a whole
snapshot only when a page joined), none while no page watches.
"""
import hmac
import json
import secrets
from pathlib import Path
from urllib.parse import quote

from twisted.internet import task
from twisted.logger import Logger
from twisted.web import pages, resource, server, static

log = Logger()

#: Seconds between two pushes of the live stream (at most).
PUSH_EVERY = 0.5
#: Seconds between keep-alive comments on a stream with nothing new.
KEEPALIVE = 15.0
#: Live streams served at once (more get 503).
MAX_STREAMS = 32
#: The cookie holding the token once the page was loaded with it.
COOKIE = b"ipkernel_dashboard"

STATIC = Path(__file__).with_name("static")

__all__ = ["DashboardSite", "new_token", "url_for", "PUSH_EVERY", "KEEPALIVE", "MAX_STREAMS", "STATIC"]

_SECURITY_HEADERS = [
    (b"Cache-Control", b"no-store"),
    (b"X-Content-Type-Options", b"nosniff"),
    (b"Referrer-Policy", b"no-referrer"),
    (b"X-Frame-Options", b"DENY"),
    (b"Content-Security-Policy",
     b"default-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
     b"frame-ancestors 'none'"),
]


def new_token():
    """An unguessable token for a dashboard URL (256 bits, URL-safe)."""
    return secrets.token_urlsafe(32)


def _json(request, data):
    request.setHeader(b"Content-Type", b"application/json; charset=utf-8")
    return json.dumps(data, separators=(",", ":")).encode()


class _Forbidden(resource.Resource):
    isLeaf = True

    def render(self, request):
        request.setResponseCode(403)
        request.setHeader(b"Content-Type", b"text/plain; charset=utf-8")
        return (b"403 Forbidden: this dashboard needs its token. Open the URL written in "
                b"the cluster directory's security/ipcontroller-dashboard.url (it ends "
                b"with ?token=...).\n")


class _Guarded(resource.Resource):
    """Hands a request on to ``inner`` only when it carries the token."""

    def __init__(self, site, inner):
        super().__init__()
        self.site, self.inner = site, inner

    def getChildWithDefault(self, name, request):
        for header, value in _SECURITY_HEADERS:
            request.setHeader(header, value)
        if not self.site.allowed(request):
            return _Forbidden()
        return self.inner.getChildWithDefault(name, request)


class _Root(resource.Resource):
    def __init__(self, site):
        super().__init__()
        self.site = site
        api = resource.Resource()
        for name in ("snapshot", "engines", "tasks", "clients", "errors"):
            api.putChild(name.encode(), _Part(site.watch, name))
        api.putChild(b"events", _Events(site))
        self.putChild(b"api", api)
        files = static.File(str(STATIC))
        files.contentTypes.update({".js": "text/javascript; charset=utf-8",
                                   ".css": "text/css; charset=utf-8"})
        files.directoryListing = lambda: _Forbidden()
        self.putChild(b"static", files)

    def getChild(self, name, request):
        if name == b"":
            return self
        return pages.notFound()

    def render_GET(self, request):
        token = request.args.get(b"token", [b""])[0]
        if token:  # loaded from the URL: later requests (scripts, styles) carry a cookie
            request.addCookie(COOKIE, token, path=b"/", httpOnly=True, sameSite="strict",
                              secure=self.site.tls)
        request.setHeader(b"Content-Type", b"text/html; charset=utf-8")
        return (STATIC / "index.html").read_bytes()


class _Part(resource.Resource):
    isLeaf = True

    def __init__(self, watch, name):
        super().__init__()
        self.watch, self.name = watch, name

    def render_GET(self, request):
        self.watch.watched()
        if self.name == "snapshot":
            return _json(request, self.watch.snapshot())
        if self.name == "errors":
            return _json(request, list(self.watch.errors))
        return _json(request, getattr(self.watch, self.name)())


class _Events(resource.Resource):
    isLeaf = True

    def __init__(self, site):
        super().__init__()
        self.site = site

    def render_GET(self, request):
        if len(self.site.streams) >= MAX_STREAMS:
            request.setResponseCode(503)
            return b"too many dashboard pages open at once\n"
        request.setHeader(b"Content-Type", b"text/event-stream; charset=utf-8")
        request.setHeader(b"X-Accel-Buffering", b"no")
        request.write(b"retry: 2000\n\n")
        self.site.subscribe(request)
        return server.NOT_DONE_YET


class DashboardSite(server.Site):
    """The dashboard of ``watch`` (a :class:`~ipkernel.dashboard.collector.ClusterWatch`)
    behind ``token``; ``tls``: served over TLS (the cookie is then Secure)."""

    def __init__(self, watch, token, clock=None, tls=False):
        if clock is None:
            from twisted.internet import reactor as clock
        self.watch = watch
        self.token = token.encode() if isinstance(token, str) else token
        self.clock = clock
        self.tls = tls
        self.streams = set()
        self._synced = set()     # streams that had their first snapshot
        self._mark = None        # where the histories were at the last push
        self._pusher = None
        self._last_sent = None
        self._last_any = 0.0
        self._channels = set()
        super().__init__(_Guarded(self, _Root(self)))
        self.displayTracebacks = False
        self.noisy = False  # no "Starting factory" lines (logged under this module's name)

    def allowed(self, request):
        """True when ``request`` carries the token (query, cookie or header)."""
        given = [request.args.get(b"token", [b""])[0], request.getCookie(COOKIE) or b""]
        auth = request.getHeader(b"authorization") or b""
        if auth.lower().startswith(b"token "):
            given.append(auth[6:].strip())
        return any(g and hmac.compare_digest(g, self.token) for g in given)

    def log(self, request):
        pass  # requests carry the token in the URL: not written to the controller log

    # -- connections ------------------------------------------------------------------

    def buildProtocol(self, addr):
        channel = super().buildProtocol(addr)
        self._channels.add(channel)
        lost = channel.connectionLost

        def connection_lost(reason):
            self._channels.discard(channel)
            return lost(reason)
        channel.connectionLost = connection_lost
        return channel

    def close(self):
        """End the live streams and drop every connection (the controller stops)."""
        self._stop_pushing()
        for request in list(self.streams):
            try:
                request.finish()
            except Exception:  # noqa: B902 - its connection went meanwhile
                pass
        self.streams.clear()
        self._synced.clear()
        self.watch.viewers = 0
        for channel in list(self._channels):
            # (the Site's protocol wraps the HTTP channel, which holds the transport)
            transport = getattr(getattr(channel, "_channel", channel), "transport", None)
            if transport is not None:
                transport.abortConnection()

    # -- the live stream --------------------------------------------------------------

    def subscribe(self, request):
        self.streams.add(request)
        self.watch.viewers = len(self.streams)

        def gone(_):
            self._drop(request)
        request.notifyFinish().addBoth(gone)
        if self._pusher is None:
            self._pusher = task.LoopingCall(self._push)
            self._pusher.clock = self.clock
            self._pusher.start(PUSH_EVERY, now=True).addErrback(
                lambda f: log.failure("the dashboard's live stream stopped", f))

    def _stop_pushing(self):
        pusher, self._pusher = self._pusher, None
        if pusher is not None and pusher.running:
            pusher.stop()

    def _drop(self, request):
        self.streams.discard(request)
        self._synced.discard(request)
        self.watch.viewers = len(self.streams)

    def _send(self, requests, message):
        for request in requests:
            try:
                request.write(message)
            except Exception:  # noqa: B902 - a page gone between two pushes
                self._drop(request)

    def _push(self):
        if not self.streams:
            self._stop_pushing()
            return
        now = self.clock.seconds()
        joined = [r for r in self.streams if r not in self._synced]
        synced = [r for r in self.streams if r in self._synced]
        mark = self.watch.mark()
        if synced:
            data = json.dumps(self.watch.update(self._mark), separators=(",", ":"))
            unchanged = _without_time(data) == self._last_sent
            if not unchanged:
                self._send(synced, b"event: update\ndata: " + data.encode() + b"\n\n")
                self._last_sent = _without_time(data)
                self._last_any = now
            elif now - self._last_any >= KEEPALIVE:
                self._send(synced, b": still here\n\n")
                self._last_any = now
        if joined:
            data = json.dumps(self.watch.snapshot(), separators=(",", ":"))
            self._send(joined, b"event: snapshot\ndata: " + data.encode() + b"\n\n")
            self._synced.update(r for r in joined if r in self.streams)
        self._mark = mark


def _without_time(data):
    """A snapshot's JSON without its leading time stamp (what 'changed' compares)."""
    cut = data.find(",")
    return data[cut:] if cut > 0 else data


def url_for(scheme, host, port, token):
    """The dashboard's URL with its token."""
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    return f"{scheme}://{host}:{port}/?token={quote(token)}"
