"""Tier 2: the dashboard of a running controller node (issue 17): the token
check, the JSON API reflecting engines, tasks and errors, the live stream."""
import json

import pytest
import pytest_twisted
from twisted.internet import defer, protocol, reactor
from twisted.web.client import Agent
from twisted.web.http_headers import Headers

from httpget import get

from ipkernel import asyncclient
from ipkernel.dashboard import Dashboard
from ipkernel.task import StringTask

pytestmark = pytest.mark.tier2

WAIT = 20


@pytest_twisted.async_yield_fixture
async def dashed(make_fc_cluster):
    cluster = await make_fc_cluster(2)
    dashboard = Dashboard(cluster.node)
    dashboard.start()
    base = dashboard.url.split("?")[0]
    try:
        yield cluster, dashboard, base
    finally:
        await dashboard.stop()


@pytest_twisted.ensureDeferred
async def test_without_the_token_nothing_is_served(dashed):
    _, dashboard, base = dashed
    for path in ["", "api/engines", "api/snapshot", "api/events", "static/dashboard.js",
                 "static/"]:
        code, _, body = await get(base + path)
        assert code == 403, path
        assert b"token" in body and b"engine" not in body, path
    code, _, _ = await get(base + "api/engines?token=" + "x" * len(dashboard.token))
    assert code == 403
    code, _, _ = await get(base + "api/engines", token=dashboard.token[:-1] + "?")
    assert code == 403


@pytest_twisted.ensureDeferred
async def test_the_page_loads_with_the_token_and_sets_a_cookie(dashed):
    _, dashboard, base = dashed
    assert dashboard.url.startswith("http://127.0.0.1:") and dashboard.token in dashboard.url
    assert len(dashboard.token) >= 40
    code, headers, body = await get(dashboard.url)
    assert code == 200 and b"<html" in body.lower()
    cookie = headers.getRawHeaders(b"set-cookie")[0]
    assert dashboard.token.encode() in cookie and b"HttpOnly" in cookie
    assert headers.getRawHeaders(b"cache-control") == [b"no-store"]


@pytest_twisted.ensureDeferred
async def test_the_api_shows_engines_tasks_and_errors(dashed):
    cluster, dashboard, base = dashed
    code, headers, body = await get(base + "api/engines", dashboard.token)
    assert code == 200 and headers.getRawHeaders(b"content-type")[0].startswith(
        b"application/json")
    engines = json.loads(body)
    assert [(e["id"], e["state"], e["queue"]) for e in engines] == [(0, "idle", 0),
                                                                   (1, "idle", 0)]
    assert all(e["host"] == "127.0.0.1" and isinstance(e["pid"], int) for e in engines)

    client = await cluster.connect_client()
    with pytest.raises(Exception):
        await client.execute("1/0", targets=1)
    errors = json.loads((await get(base + "api/errors", dashboard.token))[2])
    (error,) = errors
    assert error["engine_id"] == 1 and error["what"] == "execute"
    assert error["summary"] == "ZeroDivisionError: division by zero"
    assert "1/0" in error["traceback"] and "ZeroDivisionError" in error["traceback"]

    tasks = await asyncclient.get_task_client(cluster.tc_furl, tub=cluster.client_tub,
                                              timeout=WAIT)
    ids = [await tasks.run(StringTask("x = 1")) for _ in range(3)]
    ids.append(await tasks.run(StringTask("raise ValueError('bad task')")))
    await tasks.barrier(ids).addTimeout(WAIT, reactor)
    snapshot = json.loads((await get(base + "api/snapshot", dashboard.token))[2])
    assert (snapshot["tasks"]["succeeded"], snapshot["tasks"]["failed"]) == (3, 1)
    assert snapshot["tasks"]["pending"] == snapshot["tasks"]["running"] == 0
    task_errors = [e for e in snapshot["errors"] if e["task_id"] is not None]
    assert [e["task_id"] for e in task_errors] == [ids[-1]]
    assert "bad task" in task_errors[0]["summary"]
    # one Tub with a multi-engine and a task client: one row, both sessions, their calls
    # counted (an execute; four runs and a barrier)
    (row,) = [c for c in snapshot["clients"] if c["peer"] == client_peer(client)]
    assert row["peer"].startswith("127.0.0.1:") and row["uses"] == ["multi-engine", "tasks"]
    assert row["calls"] >= 1 + 5 and row["connected_for"] > 0


def client_peer(client):
    """``host:port`` of the client's side of its connection to the controller."""
    address = client.remote.rref.tracker.broker.transport.getHost()
    return f"{address.host}:{address.port}"


class Stream(protocol.Protocol):
    """Reads a server-sent-event stream: ``events`` holds ``(name, data)``;
    ``next_event(check)`` fires with the first one from now on that
    ``check(name, data)`` accepts."""

    def __init__(self):
        self.buffer = b""
        self.events = []
        self.waiting = []
        self.lost = None

    def dataReceived(self, data):
        self.buffer += data
        while b"\n\n" in self.buffer:
            event, self.buffer = self.buffer.split(b"\n\n", 1)
            fields = dict(line.split(b": ", 1) for line in event.split(b"\n")
                          if b": " in line and not line.startswith(b":"))
            if b"event" in fields:
                got = (fields[b"event"].decode(), json.loads(fields[b"data"]))
                self.events.append(got)
                for check, d in list(self.waiting):
                    if check(*got):
                        self.waiting.remove((check, d))
                        d.callback(got)

    def next_event(self, check):
        d = defer.Deferred()
        self.waiting.append((check, d))
        return d.addTimeout(WAIT, reactor)

    def connectionLost(self, reason):
        self.lost = reason
        for _, d in self.waiting:
            d.errback(reason)


@pytest_twisted.ensureDeferred
async def test_the_live_stream_sends_a_snapshot_then_what_changed(dashed):
    cluster, dashboard, base = dashed
    stream = Stream()
    first = stream.next_event(lambda name, data: True)
    response = await Agent(reactor).request(
        b"GET", (base + "api/events").encode(),
        Headers({b"Authorization": [f"token {dashboard.token}".encode()]}))
    assert response.code == 200
    assert response.headers.getRawHeaders(b"content-type")[0].startswith(b"text/event-stream")
    response.deliverBody(stream)
    name, snapshot = await first
    assert name == "snapshot" and len(snapshot["engines"]) == 2 and snapshot["errors"] == []

    # an error: the next update holds it, and only it
    erred = stream.next_event(lambda name, data: data["errors"])
    client = await cluster.connect_client()
    with pytest.raises(Exception):
        await client.execute("1/0", targets=0)
    name, update = await erred
    assert name == "update"
    assert [(e["engine_id"], e["what"]) for e in update["errors"]] == [(0, "execute")]
    assert len(update["tasks"]["throughput"]) <= 3   # the samples since the snapshot only

    # an engine more: an update shows it, without the error again
    grown = stream.next_event(lambda name, data: len(data["engines"]) == 3)
    await cluster.add_engine()
    name, update = await grown
    assert name == "update" and update["errors"] == []
    assert [e[0] for e in stream.events] == ["snapshot"] + ["update"] * (len(stream.events) - 1)
    await dashboard.stop()           # the stream ends with the dashboard
    assert not dashboard.site.streams
