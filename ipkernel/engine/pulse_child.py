"""The pulse process: vouches for an engine whose own thread cannot answer.

An engine's heartbeat is answered by its reactor thread, which cannot run
while user code holds the GIL in C (a long regex, compiling a huge cell).
So each ``ipengine`` starts this tiny process (see :mod:`ipkernel.engine.pulse`)
and the controller asks it, over UDP, whether a late engine is busy or
really stopped.  It reads the engine's state from ``/proc``:

* ``BUSY``: some thread of the engine is running (``R``) or in
  uninterruptible I/O (``D``): working, keep it.
* ``IDLE``: alive but every thread sleeps: a late ping then means a frozen
  engine.
* ``STOPPED``: stopped by a signal (``T``, ``t``; SIGSTOP, a debugger).
* ``GONE``: exited (or a zombie).

This file runs as ``python -I -S pulse_child.py ENGINE_PID HOST`` and uses
only C modules of the standard library (about 9 MB of memory): it imports
nothing of ipkernel.  The controller imports the wire functions below from
here, so both ends share one definition.

Wire format (a 32-byte key shared with the controller through the engine's
Foolscap registration, never in the clear): a request is ``b"IKPq"`` +
16-byte nonce + MAC; an answer is ``b"IKPa"`` + the nonce + one state byte +
8-byte CPU ticks (big-endian) + MAC; the MAC is a keyed BLAKE2b (16 bytes)
of what precedes it.  Requests without a valid MAC get no answer, and
answers are rate-limited, so the port cannot be used as a reflector.

The engine writes the key (hex, one line) on the pulse's stdin and keeps
that pipe open; the pulse prints its UDP port on stdout, and exits when the
pipe reaches end-of-file (the engine exited, however it died) or the engine
process is gone.
"""
import os
import select
import sys

import _socket

try:
    from _blake2 import blake2b
except ImportError:  # pragma: no cover - a Python built without the _blake2 module
    from hashlib import blake2b
try:
    from _operator import _compare_digest as same_digest
except ImportError:  # pragma: no cover
    from hmac import compare_digest as same_digest

ASK = b"IKPq"
ANSWER = b"IKPa"
NONCE_SIZE = 16
MAC_SIZE = 16
KEY_SIZE = 32
REQUEST_SIZE = len(ASK) + NONCE_SIZE + MAC_SIZE
ANSWER_SIZE = len(ANSWER) + NONCE_SIZE + 1 + 8 + MAC_SIZE

BUSY, IDLE, STOPPED, GONE = b"B", b"I", b"T", b"X"
#: How each state is named in the controller's log.
STATE_NAMES = {BUSY: "running", IDLE: "alive but idle", STOPPED: "stopped (SIGSTOP?)",
               GONE: "gone"}

#: Seconds between looks at whether the engine still exists.
CHECK_EVERY = 2.0
#: Answers per second at most (the controller asks once per heartbeat period).
MAX_ANSWERS_PER_SECOND = 50


def _mac(key, data):
    return blake2b(data, key=key, digest_size=MAC_SIZE).digest()


def make_request(key, nonce):
    """The datagram asking the pulse keyed ``key`` about its engine."""
    head = ASK + nonce
    return head + _mac(key, head)


def check_request(key, data):
    """The nonce of a valid request ``data``, else None."""
    if len(data) != REQUEST_SIZE or not data.startswith(ASK):
        return None
    head, mac = data[:-MAC_SIZE], data[-MAC_SIZE:]
    return head[len(ASK):] if same_digest(mac, _mac(key, head)) else None


def make_answer(key, nonce, state, ticks):
    head = ANSWER + nonce + state + int(ticks).to_bytes(8, "big")
    return head + _mac(key, head)


def check_answer(key, data):
    """``(nonce, state, ticks)`` of a valid answer ``data``, else None."""
    if len(data) != ANSWER_SIZE or not data.startswith(ANSWER):
        return None
    head, mac = data[:-MAC_SIZE], data[-MAC_SIZE:]
    if not same_digest(mac, _mac(key, head)):
        return None
    body = head[len(ANSWER):]
    return body[:NONCE_SIZE], body[NONCE_SIZE:NONCE_SIZE + 1], int.from_bytes(body[-8:], "big")


def _stat_fields(path):
    with open(path, "rb") as f:
        text = f.read()
    # the command name (field 2) may hold spaces and parentheses: skip past its last ')'
    return text[text.rindex(b")") + 2:].split()


def engine_state(pid, proc="/proc"):
    """``(state, cpu_ticks)`` of process ``pid`` (one of the states above)."""
    if not os.path.isdir(proc):
        return _state_from_ps(pid)
    try:
        fields = _stat_fields(f"{proc}/{pid}/stat")
    except (OSError, ValueError):
        return GONE, 0
    state, ticks = fields[0][:1], int(fields[11]) + int(fields[12])
    if state in b"ZX":
        return GONE, ticks
    if state in b"Tt":
        return STOPPED, ticks
    if state in b"RD":
        return BUSY, ticks
    # The main thread sleeps (waiting for the GIL, say): is another thread running?
    try:
        threads = os.listdir(f"{proc}/{pid}/task")
    except OSError:
        threads = ()
    for tid in threads:
        try:
            if _stat_fields(f"{proc}/{pid}/task/{tid}/stat")[0][:1] in b"RD":
                return BUSY, ticks
        except (OSError, ValueError, IndexError):
            continue
    return IDLE, ticks


def _state_from_ps(pid):  # pragma: no cover - systems without /proc (macOS, BSD)
    import subprocess
    try:
        out = subprocess.run(["ps", "-o", "stat=", "-p", str(pid)], capture_output=True,
                             timeout=5).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return IDLE, 0
    if not out or out[:1] in b"ZX":
        return GONE, 0
    if out[:1] in b"Tt":
        return STOPPED, 0
    return (BUSY if out[:1] in b"RDU" else IDLE), 0


def _read_key(fd):
    line = b""
    while not line.endswith(b"\n") and len(line) < 4 * KEY_SIZE:
        chunk = os.read(fd, 4 * KEY_SIZE)
        if not chunk:
            break
        line += chunk
    key = bytes.fromhex(line.strip().decode("ascii"))
    if len(key) != KEY_SIZE:
        raise ValueError("the pulse key must be 32 bytes")
    return key


def _listen(host):
    """A UDP socket on ``host``; ``"::"`` means every interface, IPv6 and IPv4
    (only IPv4 where the host has no IPv6)."""
    if host == "::":
        try:
            sock = _socket.socket(_socket.AF_INET6, _socket.SOCK_DGRAM)
        except OSError:
            host = "0.0.0.0"
        else:
            try:
                sock.setsockopt(_socket.IPPROTO_IPV6, _socket.IPV6_V6ONLY, 0)
                sock.bind((host, 0))
                return sock
            except OSError:
                sock.close()
                host = "0.0.0.0"
    sock = _socket.socket(_socket.AF_INET6 if ":" in host else _socket.AF_INET,
                          _socket.SOCK_DGRAM)
    try:
        sock.bind((host, 0))
    except OSError:
        sock.close()
        raise
    return sock


def serve(pid, host, stdin=0, stdout=1, clock=None):
    """Answer probes about ``pid`` on a UDP port of ``host`` until ``stdin`` closes."""
    import time
    clock = clock or time.monotonic
    key = _read_key(stdin)
    try:
        sock = _listen(host)
    except OSError as exc:
        os.write(2, f"ipengine pulse: cannot listen on UDP {host}: {exc}\n".encode())
        return 2
    os.write(stdout, f"{sock.getsockname()[1]}\n".encode())
    window, answered = clock(), 0
    last_check = clock()
    while True:
        readable, _, _ = select.select([sock.fileno(), stdin], [], [], CHECK_EVERY)
        if stdin in readable and not os.read(stdin, 4096):
            return 0  # the engine closed its end: it exited
        now = clock()
        if now - last_check >= CHECK_EVERY:
            last_check = now
            if engine_state(pid)[0] == GONE:
                return 0
        if sock.fileno() not in readable:
            continue
        try:
            data, peer = sock.recvfrom(256)
        except OSError:
            continue
        nonce = check_request(key, data)
        if nonce is None:
            continue
        if now - window >= 1.0:
            window, answered = now, 0
        if answered >= MAX_ANSWERS_PER_SECOND:
            continue
        answered += 1
        state, ticks = engine_state(pid)
        try:
            sock.sendto(make_answer(key, nonce, state, ticks), peer)
        except OSError:
            pass


def main(argv):
    import _signal
    # A Ctrl-C in the engine's terminal reaches its whole process group: not us.
    _signal.signal(_signal.SIGINT, _signal.SIG_IGN)
    return serve(int(argv[1]), argv[2])


if __name__ == "__main__":
    sys.exit(main(sys.argv))
