"""Tier 1: ResultBlobs keeps engines' result blobs within a byte budget and
for ``ttl`` seconds (issue 13), driven directly over socket pairs (no Tubs;
the expiry runs on a task.Clock)."""
import socket
import threading

import pytest
from twisted.internet import task

from ipkernel.datachannel import frames
from ipkernel.datachannel.results import ResultBlobs

pytestmark = pytest.mark.tier1

SIZE = 10_000


class FakeConn:
    """What ResultBlobs needs of a data connection: a socket and a send lock."""

    def __init__(self, sock):
        self.sock = sock
        self.alive = True
        self.send_lock = threading.Lock()

    def send(self, data):
        self.sock.sendall(data)

    def later(self, job):
        job()


@pytest.fixture
def engine_pair():
    """``(conn, peer)``: the controller's end of an engine connection, and the engine's."""
    ours, theirs = socket.socketpair()
    ours.settimeout(5)
    yield FakeConn(ours), theirs
    ours.close()
    theirs.close()


@pytest.fixture
def client_pair():
    ours, theirs = socket.socketpair()
    theirs.settimeout(5)
    yield FakeConn(ours), theirs
    ours.close()
    theirs.close()


def _arrive(results, engine_pair, blob_id, body):
    """An engine answered with ``blob_id`` (no route) and sent its body."""
    conn, peer = engine_pair
    results.answered(0, [blob_id], False)
    peer.sendall(body)
    results.arrived(conn, blob_id, len(body))


def _fetch_error(results, client_pair, blob_id):
    """FETCH ``blob_id``; the ERROR message the client gets."""
    conn, peer = client_pair
    results.fetch(conn, blob_id)
    kind, got_id, _, extra = frames.read_header(peer)
    assert kind == frames.ERROR and got_id == blob_id
    return extra["message"]


def _fetch_body(results, client_pair, blob_id):
    conn, peer = client_pair
    results.fetch(conn, blob_id)
    kind, got_id, length, _ = frames.read_header(peer)
    assert kind == frames.DELIVER and got_id == blob_id
    return frames.recv_exactly(peer, length)


def _ids(n):
    return [bytes([k + 1]) * 16 for k in range(n)]


def test_kept_blobs_stay_within_the_budget_oldest_dropped_first(engine_pair, client_pair):
    results = ResultBlobs(ttl=600, max_bytes=int(2.5 * SIZE))
    a, b, c = _ids(3)
    for blob_id, fill in ((a, b"a"), (b, b"b"), (c, b"c")):
        _arrive(results, engine_pair, blob_id, fill * SIZE)
    assert results.kept_bytes == 2 * SIZE
    message = _fetch_error(results, client_pair, a)
    assert a.hex() in message and "was dropped" in message
    assert "--unfetched-total" in message
    assert _fetch_body(results, client_pair, c) == b"c" * SIZE
    assert results.kept_bytes == SIZE


def test_a_blob_bigger_than_the_budget_is_not_kept_and_the_stream_stays_in_step(
        engine_pair, client_pair):
    results = ResultBlobs(ttl=600, max_bytes=SIZE)
    big, small = _ids(2)
    _arrive(results, engine_pair, big, b"B" * (3 * SIZE))
    assert results.kept_bytes == 0
    _arrive(results, engine_pair, small, b"s" * SIZE)  # read from where the big one ended
    assert _fetch_body(results, client_pair, small) == b"s" * SIZE
    message = _fetch_error(results, client_pair, big)
    assert "is bigger than the" in message and "--unfetched-total" in message


def test_kept_blobs_expire_on_the_injected_clock(engine_pair, client_pair):
    clock = task.Clock()
    results = ResultBlobs(ttl=600, clock=clock.seconds)
    old, young = _ids(2)
    _arrive(results, engine_pair, old, b"o" * SIZE)
    clock.advance(500)
    _arrive(results, engine_pair, young, b"y" * SIZE)
    clock.advance(100.5)
    results.expire()
    assert results.kept_bytes == SIZE
    message = _fetch_error(results, client_pair, old)
    assert "more than 600 s" in message and "--result-ttl" in message
    clock.advance(600)
    results.expire()
    assert results.kept_bytes == 0


def test_discarded_blobs_are_freed_and_not_kept_when_they_come_later(engine_pair, client_pair):
    results = ResultBlobs(ttl=600)
    here, coming, after = _ids(3)
    _arrive(results, engine_pair, here, b"h" * SIZE)
    results.discard([here, coming], "their result was discarded")
    assert results.kept_bytes == 0
    _arrive(results, engine_pair, coming, b"c" * SIZE)
    assert results.kept_bytes == 0  # read and dropped as it came
    _arrive(results, engine_pair, after, b"a" * SIZE)
    assert _fetch_body(results, client_pair, after) == b"a" * SIZE
    assert "their result was discarded" in results.lost_reason(here)
    assert "their result was discarded" in _fetch_error(results, client_pair, here)
    assert results.lost_reason(after) is None


def test_a_blob_dropped_while_it_arrives_is_read_to_its_end_and_forgotten(engine_pair):
    conn, peer = engine_pair
    results = ResultBlobs(ttl=600)
    blob_id, next_id = _ids(2)
    length = 3 * frames.CHUNK  # received in several pieces
    results.answered(0, [blob_id], False)
    receiver = threading.Thread(target=results.arrived, args=(conn, blob_id, length))
    receiver.start()
    peer.sendall(b"x" * frames.CHUNK)
    with results.cv:
        assert results.cv.wait_for(lambda: blob_id in results._kept
                                   and results._kept[blob_id].received > 0, 5)
    results.discard([blob_id], "dropped while it came")
    assert results.kept_bytes == 0
    peer.sendall(b"x" * (length - frames.CHUNK))
    receiver.join(10)
    assert not receiver.is_alive()
    _arrive(results, engine_pair, next_id, b"n" * SIZE)  # the stream is still in step
    assert results.kept_bytes == SIZE
