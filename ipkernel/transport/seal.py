"""Sealed records on a blocking socket: AES-256-GCM after a TLS handshake.

Python's ``ssl`` costs about 0.8-1.0 ms of CPU per MB on each side here
(16 KiB records, one ``SSL_read`` each, extra copies), while AES-256-GCM
itself costs 0.12-0.17 ms per MB through ``cryptography``.  So for bulk data
TLS is used for what it does well, the handshake (the certificate checked
against the FURL's tub id, the one-time token), and the bytes then go as
records of this module on the raw socket:

* both ends send :data:`SECRET_SIZE` fresh random bytes inside TLS and
  :func:`derive_keys` makes one key per direction from the two with
  HKDF-SHA256, so a key is never used for both directions nor in two
  connections;
* a record is a header (payload length, 4 bytes big-endian, and a type byte)
  followed by the payload sealed with AES-256-GCM, the header being the
  associated data; the nonce is the direction's record counter, never sent,
  so a changed, dropped, replayed or reordered record fails authentication;
* a header announcing more than the agreed record size is refused before
  anything is buffered;
* :meth:`SealedSocket.close` sends a sealed close record, so a stream cut
  short is told apart from its end (:class:`SealError`, not an end of file).

This is the record protection of TLS 1.3 with a fixed cipher and bigger
records (up to :data:`MAX_RECORD`), written on a well-kept library.
:class:`SealedSocket` offers what the data channel uses of a socket.
"""
import os
import socket
import struct

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

__all__ = ["SealedSocket", "SealError", "derive_keys", "end_unless_sending", "fresh_secret",
           "seal_after_tls", "SECRET_SIZE", "MAX_RECORD"]

#: Bytes of fresh secret each end contributes.
SECRET_SIZE = 32

#: The largest payload of one record (bytes).
MAX_RECORD = 1 << 20

_HEADER = struct.Struct(">IB")
_TAG = 16
_DATA, _CLOSE = 0, 1
_INFO = b"ipkernel sealed records v1 "


class SealError(ConnectionError):
    """The sealed stream is broken: a record failed authentication, was
    bigger than agreed, or the stream ended without its close record.
    Nothing of the broken record counts as read (its bytes may have been
    written into the reader's buffer), and every later read fails too."""


def derive_keys(initiator_secret, responder_secret, initiator):
    """Return ``(send_key, receive_key)`` for one end.

    Both ends pass the same two secrets (the connecting end's first);
    ``initiator`` says which end this is.
    """
    for secret in (initiator_secret, responder_secret):
        if len(secret) != SECRET_SIZE:
            raise ValueError(f"a sealing secret must be {SECRET_SIZE} bytes, not {len(secret)}")
    salt = initiator_secret + responder_secret
    keys = {}
    for direction in (b"initiator to responder", b"responder to initiator"):
        hkdf = HKDF(algorithm=hashes.SHA256(), length=32, salt=salt, info=_INFO + direction)
        keys[direction] = hkdf.derive(b"ipkernel data channel")
    outgoing, incoming = keys[b"initiator to responder"], keys[b"responder to initiator"]
    return (outgoing, incoming) if initiator else (incoming, outgoing)


def _nonce(counter):
    if counter >= 1 << 64:
        raise SealError("the sealed stream used up its record counter; reconnect")
    return counter.to_bytes(12, "big")


class SealedSocket:
    """A connected blocking socket whose bytes travel as sealed records.

    ``sock`` must be a plain socket with nothing left unread in any layer
    above it (after a TLS handshake: once ``unwrap()`` returned).  ``peer``
    names the other end in errors.
    """

    def __init__(self, sock, send_key, receive_key, peer="the peer", max_record=MAX_RECORD):
        self._sock = sock
        self._seal = AESGCM(send_key)
        self._open = AESGCM(receive_key)
        self._sent = 0
        self._received = 0
        self.peer = peer
        self.max_record = max_record
        self._buffer = memoryview(b"")   # opened payload not yet read
        self._in = bytearray(max_record + _TAG)
        self._out = bytearray(_HEADER.size + max_record + _TAG)
        self._ended = False     # the peer's close record was read
        self._ending = False    # ours was sent
        self._closed = False
        self._failure = None   # what broke the incoming stream

    # -- sending ---------------------------------------------------------------------

    def sendall(self, data):
        """Send all of ``data`` (bytes-like) as one or more sealed records."""
        view = memoryview(data).cast("B")
        for start in range(0, len(view), self.max_record):
            self._send_record(_DATA, view[start:start + self.max_record])

    def _send_record(self, kind, payload, wait=True):
        header = _HEADER.pack(len(payload), kind)
        nonce = _nonce(self._sent)
        self._sent += 1
        size = _HEADER.size + len(payload) + _TAG
        out = memoryview(self._out)[:size]
        out[:_HEADER.size] = header
        self._seal.encrypt_into(nonce, payload, header, out[_HEADER.size:])
        if wait:
            self._sock.sendall(out)
        elif self._sock.send(out, socket.MSG_DONTWAIT) < size:
            raise BlockingIOError("the close record did not fit in the send buffer")

    # -- receiving -------------------------------------------------------------------

    def recv_into(self, buffer, nbytes=0):
        """Read up to ``nbytes`` (default: the buffer's size) opened bytes into
        ``buffer``; 0 once the peer closed the stream."""
        target = memoryview(buffer).cast("B")
        wanted = nbytes or len(target)
        if wanted == 0:
            return 0
        if self._buffer:
            n = min(wanted, len(self._buffer))
            target[:n] = self._buffer[:n]
            self._buffer = self._buffer[n:]
            return n
        if self._ended:
            return 0
        if self._failure is not None:
            raise self._failure
        try:
            return self._read_record(target[:wanted])
        except _NothingYet as idle:  # a timeout before a record began: the stream is whole
            raise idle.error from None
        except OSError as exc:   # a timeout or error mid-record leaves no record boundary
            self._failure = exc if isinstance(exc, SealError) else self._broken(
                f"reading a record failed ({exc}); the stream cannot go on")
            raise

    def recv(self, bufsize):
        """Return up to ``bufsize`` opened bytes; b"" once the peer closed."""
        chunk = bytearray(bufsize)
        n = self.recv_into(chunk)
        return bytes(chunk[:n])

    def _read_record(self, target):
        """Read one record; put its payload in ``target`` if it fits (else keep
        it for the next reads and fill ``target``); return the bytes placed."""
        header = bytearray(_HEADER.size)
        self._read_exactly(memoryview(header), at_boundary=True)
        length, kind = _HEADER.unpack(header)
        if length > self.max_record:
            raise self._broken(f"a record of {length} bytes was announced; "
                               f"at most {self.max_record} were agreed")
        if kind not in (_DATA, _CLOSE):
            raise self._broken(f"a record of unknown type {kind} arrived")
        sealed = memoryview(self._in)[:length + _TAG]
        self._read_exactly(sealed, at_boundary=False)
        nonce = _nonce(self._received)
        self._received += 1
        fits = length <= len(target)
        opened = target[:length] if fits else memoryview(bytearray(length))
        try:
            self._open.decrypt_into(nonce, sealed, bytes(header), opened)
        except InvalidTag:
            raise self._broken("a record failed authentication (changed, replayed, "
                               "reordered or from another connection)") from None
        if kind == _CLOSE:
            self._ended = True
            return 0
        if fits:
            return length
        n = len(target)
        target[:] = opened[:n]
        self._buffer = opened[n:]
        return n

    def _read_exactly(self, view, at_boundary):
        got = 0
        while got < len(view):
            try:
                n = self._sock.recv_into(view[got:])
            except (BlockingIOError, TimeoutError) as exc:
                if at_boundary and got == 0:
                    raise _NothingYet(exc) from None
                raise
            if n == 0:
                if at_boundary and got == 0:
                    raise self._broken("the stream ended without its close record "
                                       "(cut short)")
                raise self._broken("the stream ended in the middle of a record")
            got += n

    def _broken(self, why):
        return SealError(f"sealed data channel with {self.peer}: {why}")

    # -- the rest of a socket --------------------------------------------------------

    def end(self, wait=True):
        """Send the close record (once; if the socket still works): the peer
        reads the end of the stream.  Nothing may be sent after it.
        ``wait=False``: only if the socket takes it at once (else the peer
        reads a stream cut short); for closing from another thread."""
        if self._ending:
            return
        self._ending = True
        try:
            self._send_record(_CLOSE, b"", wait)
        except OSError:
            pass

    def close(self):
        """:meth:`end` the stream and close the socket."""
        if self._closed:
            return
        self._closed = True
        self.end()
        self._sock.close()

    def settimeout(self, timeout):
        self._sock.settimeout(timeout)

    def gettimeout(self):
        return self._sock.gettimeout()

    def fileno(self):
        return self._sock.fileno()

    def shutdown(self, how):
        self._sock.shutdown(how)

    def setsockopt(self, *args):
        self._sock.setsockopt(*args)

    def getsockopt(self, *args):
        return self._sock.getsockopt(*args)

    def getpeername(self):
        return self._sock.getpeername()

    def getsockname(self):
        return self._sock.getsockname()


class _NothingYet(Exception):
    """A read timed out before any byte of the next record came."""

    def __init__(self, error):
        super().__init__(error)
        self.error = error


def seal_after_tls(tls, initiator_secret, responder_secret, initiator, peer="the peer"):
    """A :class:`SealedSocket` on the socket under the stdlib TLS socket
    ``tls`` (whose handshake carried both secrets), which is given up: the
    connection goes on in sealed records.  ConnectionError if TLS still holds
    bytes not read (the other end sent more than it should have)."""
    if tls.pending():
        raise ConnectionError(f"{peer} sent more over TLS than the handshake holds")
    raw = socket.socket(fileno=tls.detach())
    raw.settimeout(None)
    send_key, receive_key = derive_keys(initiator_secret, responder_secret, initiator)
    return SealedSocket(raw, send_key, receive_key, peer=peer)


def end_unless_sending(sock, send_lock):
    """Before closing ``sock`` from any thread: if it is a :class:`SealedSocket`
    and no send holds ``send_lock``, send its close record without waiting
    (the peer then reads an end, not a stream cut short)."""
    if isinstance(sock, SealedSocket) and send_lock.acquire(blocking=False):
        try:
            sock.end(wait=False)
        finally:
            send_lock.release()


def fresh_secret():
    """:data:`SECRET_SIZE` random bytes for :func:`derive_keys`."""
    return os.urandom(SECRET_SIZE)
