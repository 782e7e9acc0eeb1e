"""Helpers for tests that talk to a port with raw blocking sockets.

Importable from any test module (``tests/`` is on ``pythonpath``).
"""
import socket
import ssl
import threading
import time


def is_closed(sock):
    """True once the other end has closed ``sock`` (does not wait)."""
    timeout = sock.gettimeout()
    sock.settimeout(0)  # (with a timeout, even MSG_DONTWAIT first waits for data)
    try:
        return sock.recv(1, socket.MSG_PEEK) == b""
    except BlockingIOError:
        return False
    except OSError:
        return True
    finally:
        sock.settimeout(timeout)


def closed_by_peer(sock, seconds):
    """Seconds until ``sock`` is closed by the other end (reading and
    dropping what it sends; bounded by ``seconds``)."""
    sock.settimeout(seconds)
    start = time.monotonic()
    try:
        while sock.recv(4096):
            pass
    except (ConnectionError, ssl.SSLError):  # (a sealed stream cut short, too)
        pass
    return time.monotonic() - start


def trickle(sock, data, every):
    """Send ``data`` one byte every ``every`` seconds from a thread of its
    own (a slow-loris login); the Event that stops it, and the thread."""
    stop = threading.Event()

    def send():
        for byte in data:
            if stop.wait(every):
                return
            try:
                sock.send(bytes([byte]))
            except OSError:
                return
    sender = threading.Thread(target=send, daemon=True)
    sender.start()
    return stop, sender
