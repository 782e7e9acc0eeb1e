"""Where the bench's processes run: one host, or two "hosts" made of network
namespaces (``--remote-engines``, ``--remote-client``).

The two namespaces are ``NAME-a`` (10.213.INDEX.1) and ``NAME-b``
(10.213.INDEX.2), joined by a veth pair, made and removed by
``scripts/ci/netns.sh``.  The controller (dask scheduler, ipyparallel
controller) always runs in *a* and the engines (workers) in *b*; the client,
that is the bench process making the calls, runs in *a* with
``--remote-engines`` and in *b* with ``--remote-client``.

:func:`run_between_hosts` is the outer half: it makes the namespaces, runs
the bench again inside the client's namespace (with the hidden
``--placement`` option that :meth:`Placement.decode` reads), and always
removes the namespaces, which also ends every process still running in them
(all the bench started runs there).
"""
import os
import shutil
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
NETNS_SH = ROOT / "scripts" / "ci" / "netns.sh"
#: Bound of one run of netns.sh.
SCRIPT_TIMEOUT = 60
#: Seconds the inner bench may take beyond its own --timeout, and to stop
#: after a signal, before it is killed.
GRACE = 180
STOP_GRACE = 60

LOCAL, REMOTE_ENGINES, REMOTE_CLIENT = "local", "remote-engines", "remote-client"
MODES = (LOCAL, REMOTE_ENGINES, REMOTE_CLIENT)


@dataclass(frozen=True)
class Placement:
    """The namespaces of the controller (``server_ns``), the engines
    (``engine_ns``) and the client (``client_ns``); all None when ``mode`` is
    :data:`LOCAL`."""

    mode: str = LOCAL
    name: str = None
    index: int = None

    def __post_init__(self):
        if self.mode not in MODES:
            raise ValueError(f"unknown placement {self.mode!r}: one of {', '.join(MODES)}")
        if self.mode != LOCAL and (not self.name or not self.index):
            raise ValueError(f"placement {self.mode} needs a namespace name and index")

    @property
    def remote(self):
        """True when engines run on the other "host"."""
        return self.mode != LOCAL

    @property
    def client_remote(self):
        """True when the client is not on the controller's "host"."""
        return self.mode == REMOTE_CLIENT

    @property
    def server_ns(self):
        return f"{self.name}-a" if self.remote else None

    @property
    def engine_ns(self):
        return f"{self.name}-b" if self.remote else None

    @property
    def client_ns(self):
        return self.engine_ns if self.client_remote else self.server_ns

    @property
    def server_addr(self):
        """The controller's address on the veth (None when local)."""
        return f"10.213.{self.index}.1" if self.remote else None

    @property
    def engine_addr(self):
        """The engines' address on the veth (None when local)."""
        return f"10.213.{self.index}.2" if self.remote else None

    @property
    def client_facing_addr(self):
        """The address the controller offers the client: loopback when they
        share a host (ipkernel's fast paths are for loopback), else its veth one."""
        return self.server_addr if self.client_remote else "127.0.0.1"

    @staticmethod
    def prefix(ns):
        """The argv prefix running a command in namespace ``ns`` ([] for None)."""
        return ["ip", "netns", "exec", ns] if ns else []

    def describe(self):
        """One line for the table's header."""
        if not self.remote:
            return "all on one host"
        client = "b (with the engines)" if self.client_remote else "a (with the controller)"
        return (f"controller in {self.server_ns} ({self.server_addr}), engines in "
                f"{self.engine_ns}, client in {client}")

    def encode(self):
        """The value of the hidden ``--placement`` option."""
        return self.mode if not self.remote else f"{self.mode}:{self.name}:{self.index}"

    @classmethod
    def decode(cls, text):
        """The Placement :meth:`encode` wrote."""
        mode, _, rest = text.partition(":")
        if not rest:
            return cls(mode)
        name, _, index = rest.rpartition(":")
        return cls(mode, name, int(index))


def unavailable():
    """Why the namespaces cannot be made here (a sentence saying what to do),
    or None when they can."""
    if os.geteuid() != 0:
        return ("--remote-engines and --remote-client make network namespaces, which needs "
                "root: run the bench as root (for example with sudo)")
    if shutil.which("ip") is None:
        return ("--remote-engines and --remote-client need iproute2's 'ip netns': "
                "apt-get install iproute2")
    try:
        probe = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True,
                               timeout=SCRIPT_TIMEOUT)
    except (OSError, subprocess.SubprocessError) as exc:
        return f"'ip netns list' failed ({exc}): network namespaces are not usable here"
    if probe.returncode != 0:
        return (f"'ip netns' is unavailable ({probe.stderr.strip()}): network namespaces "
                "are not usable here")
    return None


def pair_name(pid=None):
    """A namespace NAME and INDEX (1..250) for this process."""
    pid = os.getpid() if pid is None else pid
    return f"bench{pid}", pid % 250 + 1


def netns(*args):
    """Run ``netns.sh ARGS``; raise RuntimeError with its output when it fails."""
    done = subprocess.run(["bash", str(NETNS_SH), *map(str, args)], capture_output=True,
                          text=True, timeout=SCRIPT_TIMEOUT)
    if done.returncode != 0:
        raise RuntimeError(f"netns.sh {' '.join(map(str, args))} exited {done.returncode}: "
                           f"{(done.stderr or done.stdout).strip()}")
    return done.stdout


def inner_argv(argv, placement):
    """The command running the bench again inside the client's namespace."""
    return [*Placement.prefix(placement.client_ns), sys.executable, "-m", "bench", *argv,
            "--placement", placement.encode()]


def _stop(child):
    """Ask the inner bench to stop (SIGINT: it stops its clusters and reports),
    then kill it if it is still there after :data:`STOP_GRACE`."""
    if child.poll() is None:
        child.send_signal(signal.SIGINT)
        try:
            child.wait(STOP_GRACE)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait(STOP_GRACE)


def run_between_hosts(argv, mode, timeout, log=print):
    """Make the namespaces, run the bench with its arguments ``argv`` (passed
    on as they are) inside them in ``mode``, remove them; return the exit
    status (2: namespaces cannot be made here, 1: their set-up failed or the
    run overran ``timeout`` seconds by :data:`GRACE`, 130: interrupted).

    Ctrl-C or SIGTERM stop the inner run (which reports what it measured),
    and the namespaces are removed in every case.
    """
    why = unavailable()
    if why:
        log(f"python -m bench: {why}")
        return 2
    name, index = pair_name()
    placement = Placement(mode, name, index)
    child = None
    try:
        try:
            netns("up", name, index)
        except (RuntimeError, OSError, subprocess.SubprocessError) as exc:
            log(f"python -m bench: could not make the namespaces: {exc}")
            return 1
        log(f"made namespaces {placement.server_ns} and {placement.engine_ns}: "
            f"{placement.describe()}")
        # its own session: a Ctrl-C reaches it once, forwarded by _stop
        child = subprocess.Popen(inner_argv(argv, placement), cwd=ROOT, start_new_session=True)
        try:
            return child.wait(timeout + GRACE)
        except subprocess.TimeoutExpired:
            log(f"the bench inside the namespaces did not end within {timeout + GRACE:.0f} s: "
                "stopping it")
            return 1
    except KeyboardInterrupt:
        log("interrupted: stopping the bench inside the namespaces")
        return 130
    finally:
        # the clean-up is bounded; a second Ctrl-C or a SIGTERM must not cut it short
        previous = {s: signal.signal(s, signal.SIG_IGN) for s in (signal.SIGINT, signal.SIGTERM)}
        try:
            if child is not None:
                _stop(child)
            _remove(name, log)
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)


def _remove(name, log):
    """``netns.sh down NAME`` (also ends what still runs in the namespaces),
    saying how to do it by hand when it fails."""
    try:
        for line in netns("down", name).strip().splitlines():
            log(line)
    except Exception as exc:  # noqa: B902 - said, with what to do
        log(f"could not remove the namespaces {name}-a/{name}-b: {exc}; "
            f"remove them with: bash {NETNS_SH} down {name}")
