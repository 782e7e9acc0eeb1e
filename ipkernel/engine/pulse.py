"""The engine's pulse: a tiny helper process that answers for it while it is busy.

User code that holds the GIL in C (a long regex, compiling a huge cell, a
deep recursion inside an extension) stops every thread of the engine,
including the one that answers the controller's heartbeat.  The controller
then asks the engine's :class:`Pulse` (a separate process, see
:mod:`ipkernel.engine.pulse_child`) whether the engine is busy or really
stopped or gone, and keeps a busy one.

:class:`Pulse` starts that process, hands it a fresh random key and reads
its UDP port; :meth:`Pulse.offer` is what the engine tells the controller
(over its encrypted Foolscap connection) so it can ask.  The process exits
with the engine, however the engine ends.
"""
import ipaddress
import os
import secrets
import select
import subprocess
import sys
import time

from ipkernel.engine import pulse_child

#: Seconds to wait for the pulse process to report its port.
START_TIMEOUT = 10.0
#: Seconds to wait for the pulse process to exit once told to.
STOP_TIMEOUT = 2.0


class PulseError(RuntimeError):
    """The pulse process could not be started."""


def bind_host(hosts):
    """Where the pulse listens, given the hosts the controller's FURL names.

    Only the loopback address when the controller is on this host (every
    hint is a loopback address), else ``"::"``, every interface (IPv6 and
    IPv4): the controller asks at the address it sees the engine connect from.
    """
    hosts = list(hosts)
    if hosts and all(_is_loopback(h) for h in hosts):
        return "127.0.0.1"
    return "::"


def _is_loopback(host):
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def furl_hosts(furl):
    """The host names of the ``tcp:`` connection hints of ``furl``."""
    hints = furl.split("@", 1)[1].split("/", 1)[0] if "@" in furl else ""
    hosts = []
    for hint in hints.split(","):
        parts = hint.split(":")
        if parts[0] == "tcp" and len(parts) >= 3:
            hosts.append(":".join(parts[1:-1]).strip("[]"))
        elif len(parts) == 2:  # the old HOST:PORT form
            hosts.append(parts[0])
    return hosts


class Pulse:
    """The pulse process of this engine (of process ``pid``, listening on ``host``)."""

    def __init__(self, host="127.0.0.1", pid=None):
        self.host = host
        self.pid = os.getpid() if pid is None else pid
        self.key = secrets.token_bytes(pulse_child.KEY_SIZE)
        self.port = None
        self.process = None

    def start(self, timeout=START_TIMEOUT):
        """Start the process and wait for its port (blocking; call it off the reactor)."""
        process = self.process = subprocess.Popen(
            [sys.executable, "-I", "-S", pulse_child.__file__, str(self.pid), self.host],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, close_fds=True)
        try:
            process.stdin.write(self.key.hex().encode() + b"\n")
            process.stdin.flush()
            self.port = self._read_port(process, timeout)
        except BaseException:
            self.stop()
            raise
        finally:
            process.stdout.close()
        return self.port

    @staticmethod
    def _read_port(process, timeout):
        deadline = time.monotonic() + timeout
        fd = process.stdout.fileno()
        line = b""
        while not line.endswith(b"\n"):
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([fd], [], [], left)[0]:
                raise PulseError(f"the pulse process did not start within {timeout:g} s")
            chunk = os.read(fd, 64)
            if not chunk:
                raise PulseError(f"the pulse process exited at start (status "
                                 f"{process.wait()}); see the engine's stderr")
            line += chunk
        return int(line)

    def offer(self):
        """What the controller needs to ask this pulse: ``["udp", port, key]`` (all str)."""
        if self.port is None or self.process is None or self.process.poll() is not None:
            return []
        return ["udp", str(self.port), self.key.hex()]

    def stop(self):
        """End the process (it also ends by itself when this process exits)."""
        process, self.process = self.process, None
        if process is None:
            return
        try:
            process.stdin.close()
        except OSError:
            pass
        try:
            process.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
