"""Tier 1: sealed records (ipkernel.transport.seal) over a socket pair."""
import os
import socket
import threading

import pytest

from ipkernel.transport import seal
from ipkernel.transport.seal import SealError, SealedSocket, derive_keys, fresh_secret

pytestmark = [pytest.mark.tier1, pytest.mark.timeout(60)]


class Recorder:
    """A socket stand-in that keeps what is sent, record by record."""

    def __init__(self):
        self.sent = []

    def sendall(self, data):
        self.sent.append(bytes(data))

    def close(self):
        pass


class Replay:
    """A socket stand-in that gives back recorded bytes, then an end of file."""

    def __init__(self, data):
        self.data = memoryview(bytes(data))

    def recv_into(self, view):
        n = min(len(view), len(self.data), 7919)   # odd pieces: partial reads
        view[:n] = self.data[:n]
        self.data = self.data[n:]
        return n


def keys():
    a, b = fresh_secret(), fresh_secret()
    return derive_keys(a, b, True), derive_keys(a, b, False)


def sealed_records(*payloads, max_record=seal.MAX_RECORD, close=True):
    (send, _), (_, receive) = keys()
    out = Recorder()
    writer = SealedSocket(out, send, b"\0" * 32, max_record=max_record)
    for p in payloads:
        writer.sendall(p)
    if close:
        writer.close()
    return out.sent, receive


def reader(records, receive, max_record=seal.MAX_RECORD):
    return SealedSocket(Replay(b"".join(records)), b"\0" * 32, receive, peer="engine 3",
                        max_record=max_record)


def read_all(sock, piece=65536):
    got = bytearray()
    buf = bytearray(piece)
    while True:
        n = sock.recv_into(buf)
        if n == 0:
            return bytes(got)
        got += buf[:n]


def test_each_direction_gets_its_own_key_and_both_ends_agree():
    (i_send, i_recv), (r_send, r_recv) = keys()
    assert i_send == r_recv and i_recv == r_send and i_send != i_recv
    assert keys()[0] != (i_send, i_recv)   # fresh secrets, fresh keys


def test_a_secret_of_the_wrong_size_is_refused():
    with pytest.raises(ValueError, match="32 bytes"):
        derive_keys(b"short", fresh_secret(), True)


@pytest.mark.parametrize("size", [0, 1, 15, 16, 17, 4095, 65536, 1 << 20, (1 << 20) + 1,
                                  3 * (1 << 20) + 5])
@pytest.mark.parametrize("piece", [1000, 1 << 20, 5 << 20])
def test_what_is_sent_is_read_back_whole_in_pieces_of_any_size(size, piece):
    data = os.urandom(size)
    records, receive = sealed_records(data)
    assert read_all(reader(records, receive), piece) == data


def test_what_is_sent_is_read_back_byte_by_byte():
    data = os.urandom(40000)
    records, receive = sealed_records(data[:10], data[10:], max_record=16384)
    assert read_all(reader(records, receive, max_record=16384), 1) == data


def test_records_are_capped_and_carry_nothing_readable():
    data = b"secret text " * 50_000
    records, _ = sealed_records(data, max_record=65536)
    assert len(records) == -(-len(data) // 65536) + 1   # the data, then the close record
    assert all(b"secret text" not in r for r in records)


def test_a_flipped_bit_fails_authentication():
    records, receive = sealed_records(b"a" * 5000, b"b" * 5000)
    broken = bytearray(records[1])
    broken[20] ^= 1
    sock = reader([records[0], bytes(broken), records[2]], receive)
    assert sock.recv(10000) == b"a" * 5000
    with pytest.raises(SealError, match="engine 3: a record failed authentication"):
        sock.recv(10000)
    with pytest.raises(SealError):   # and the stream stays broken
        sock.recv(10000)


def test_a_changed_header_fails_authentication():
    records, receive = sealed_records(b"a" * 5000)
    broken = bytearray(records[0])
    broken[4] = 1   # the data record claims to be the close record
    with pytest.raises(SealError, match="authentication"):
        reader([bytes(broken)] + records[1:], receive).recv(10000)


def test_a_replayed_record_fails_authentication():
    records, receive = sealed_records(b"first", b"second")
    sock = reader([records[0], records[0], records[1], records[2]], receive)
    assert sock.recv(100) == b"first"
    with pytest.raises(SealError, match="authentication"):
        sock.recv(100)


def test_reordered_records_fail_authentication():
    records, receive = sealed_records(b"first", b"second")
    with pytest.raises(SealError, match="authentication"):
        reader([records[1], records[0], records[2]], receive).recv(100)


def test_a_record_from_another_connection_fails_authentication():
    records, _ = sealed_records(b"first")
    _, other = sealed_records(b"first")
    with pytest.raises(SealError, match="authentication"):
        reader(records, other).recv(100)


def test_a_stream_cut_short_is_not_an_end_of_file():
    records, receive = sealed_records(b"whole", close=False)
    sock = reader(records, receive)
    assert sock.recv(100) == b"whole"
    with pytest.raises(SealError, match="without its close record"):
        sock.recv(100)


def test_a_stream_cut_in_the_middle_of_a_record_says_so():
    records, receive = sealed_records(b"x" * 10000)
    with pytest.raises(SealError, match="middle of a record"):
        reader([records[0][:5000]], receive).recv(20000)


def test_an_oversized_header_is_refused_before_its_payload_is_read():
    records, receive = sealed_records(b"y" * 70000, max_record=1 << 20)
    replay = Replay(b"".join(records))
    sock = SealedSocket(replay, b"\0" * 32, receive, peer="engine 3", max_record=65536)
    with pytest.raises(SealError, match="70000 bytes was announced; at most 65536"):
        sock.recv(100)
    assert len(replay.data) == len(b"".join(records)) - 5   # only the header was taken


def test_the_close_record_ends_the_stream_for_every_later_read():
    records, receive = sealed_records(b"z")
    sock = reader(records, receive)
    assert sock.recv(10) == b"z" and sock.recv(10) == b"" and sock.recv(10) == b""


def test_a_timeout_in_the_middle_of_a_record_breaks_the_stream():
    left, right = socket.socketpair()
    try:
        (send, _), (_, receive) = keys()
        out = Recorder()
        SealedSocket(out, send, b"\0" * 32).sendall(b"q" * 1000)
        left.sendall(out.sent[0][:100])   # half a record, then silence
        sock = SealedSocket(right, b"\0" * 32, receive, peer="engine 3")
        sock.settimeout(0.2)
        with pytest.raises(TimeoutError):
            sock.recv(2000)
        left.sendall(out.sent[0][100:])   # the rest comes too late: no boundary any more
        with pytest.raises(SealError, match="cannot go on"):
            sock.recv(2000)
    finally:
        left.close()
        right.close()


@pytest.fixture
def one_way():
    """``(writer, reader, left, right)``: sealed ends of a socket pair, one
    direction keyed (the sockets are closed afterwards)."""
    left, right = socket.socketpair()
    (send, _), (_, receive) = keys()
    yield (SealedSocket(left, send, b"\0" * 32),
           SealedSocket(right, b"\0" * 32, receive, peer="engine 3"), left, right)
    left.close()
    right.close()


def test_a_timeout_before_a_record_begins_leaves_the_stream_whole(one_way):
    writer, sock, _, _ = one_way
    sock.settimeout(0.05)
    with pytest.raises(TimeoutError):
        sock.recv(10)   # nothing came: an idle stream, not a broken one
    writer.sendall(b"later")
    assert sock.recv(10) == b"later"


def test_a_receive_timeout_of_the_socket_under_it_works_the_same(one_way):
    writer, sock, _, _ = one_way
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO,
                    (0).to_bytes(8, "little") + (50000).to_bytes(8, "little"))
    assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, 16) != bytes(16)
    with pytest.raises(BlockingIOError):
        sock.recv(10)
    writer.sendall(b"x")
    assert sock.recv(10) == b"x"


def test_end_sends_the_close_record_once_and_keeps_the_socket_open(one_way):
    writer, sock, left, right = one_way
    writer.sendall(b"last")
    writer.end()
    writer.end()
    assert sock.recv(10) == b"last" and sock.recv(10) == b""
    assert left.fileno() >= 0   # still open: a reader blocked on it is woken by shutdown
    writer.close()
    right.settimeout(1)
    assert right.recv(10) == b""   # no second close record, just the end of the socket


def test_both_directions_at_once_over_a_real_socket_pair():
    left, right = socket.socketpair()
    (i_send, i_recv), (r_send, r_recv) = keys()
    a = SealedSocket(left, i_send, i_recv, peer="right")
    b = SealedSocket(right, r_send, r_recv, peer="left")
    there, back = os.urandom(7 << 20), os.urandom(3 << 20)
    got = {}

    def serve():
        got["there"] = b"".join(iter_exact(b, len(there)))
        b.sendall(back)
        b.close()
    thread = threading.Thread(target=serve)
    thread.start()
    try:
        a.sendall(there)
        assert read_all(a) == back
    finally:
        thread.join(30)
        a.close()
    assert got["there"] == there


def iter_exact(sock, size):
    left = size
    while left:
        chunk = sock.recv(min(left, 1 << 20))
        assert chunk, "the stream ended early"
        left -= len(chunk)
        yield chunk


def test_a_close_record_goes_only_when_no_send_holds_the_lock(one_way):
    writer, sock, _, _ = one_way
    lock = threading.Lock()
    with lock:   # a send under way: nothing is sent in the middle of it
        seal.end_unless_sending(writer, lock)
    writer.sendall(b"more")
    seal.end_unless_sending(writer, lock)
    assert sock.recv(10) == b"more" and sock.recv(10) == b""
    seal.end_unless_sending(object(), lock)   # not sealed: nothing to do
