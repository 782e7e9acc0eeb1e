"""A second host for tier-4 tests: two network namespaces joined by a veth pair.

``two_hosts()`` (a context manager, also usable as a pytest fixture body)
runs ``scripts/ci/netns.sh up NAME INDEX`` with a NAME and INDEX unique to
this process, yields a :class:`Hosts` and always runs ``netns.sh down NAME``
afterwards.  The only addresses a test may target are ``addr_a`` and
``addr_b`` (10.213.INDEX.1 and .2, inside our own namespaces) and loopback.

Without root or without ``ip netns`` the test is skipped naming the script;
under ``CI=true`` it fails instead (``.ci/run`` must have set things up).

``hosts_with_sshd(state_dir)`` also starts a real sshd in namespace b
(``scripts/ci/sshd-netns.sh``) and yields :class:`SSHHosts`, whose
``ssh_config`` makes ``ssh -F ssh_config addr_b`` work from namespace a;
it stops that sshd afterwards (then the namespaces go).

Import it from a test module (``tests/`` is on ``sys.path``)::

    from netns import two_hosts

    @pytest.fixture
    def hosts():
        with two_hosts() as h:
            yield h
"""
import contextlib
import itertools
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
NETNS_SH = ROOT / "scripts" / "ci" / "netns.sh"
SCRIPT = "scripts/ci/netns.sh"
SSHD_NETNS_SH = ROOT / "scripts" / "ci" / "sshd-netns.sh"
SSHD_SCRIPT = "scripts/ci/sshd-netns.sh"
SSHD = Path("/usr/sbin/sshd")
#: Bound for one run of a set-up script.
SCRIPT_TIMEOUT = 60

_counter = itertools.count()


@dataclass(frozen=True)
class Hosts:
    """Two namespaces ``a`` and ``b`` with their addresses on the veth pair."""

    name: str
    index: int
    a: str
    b: str
    addr_a: str
    addr_b: str

    @staticmethod
    def exec_prefix(ns):
        """The argv prefix that runs a command inside namespace ``ns``."""
        return ["ip", "netns", "exec", ns]


def unavailable():
    """Why namespaces cannot be made here, or None when they can."""
    if os.geteuid() != 0:
        return "network namespaces need root"
    if shutil.which("ip") is None:
        return "no 'ip' command (iproute2)"
    try:
        probe = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True,
                               timeout=SCRIPT_TIMEOUT)
    except (OSError, subprocess.TimeoutExpired) as e:
        return f"'ip netns list' failed: {e}"
    if probe.returncode != 0:
        return f"'ip netns' is unavailable: {probe.stderr.strip()}"
    return None


def skip_or_fail(why, todo=f"{SCRIPT} needs root and iproute2 ('ip netns')"):
    """Skip the test saying ``why`` and ``todo`` (which names the script);
    under ``CI=true`` fail it instead."""
    if os.environ.get("CI") == "true":
        pytest.fail(f"{why}: .ci/run must set this up first ({todo})")
    pytest.skip(f"{why}: {todo}")


def run_script(*args, script=NETNS_SH, timeout=SCRIPT_TIMEOUT):
    """Run a set-up script; return its stdout, raise with its output if it fails."""
    done = subprocess.run(["bash", str(script), *map(str, args)], capture_output=True,
                          text=True, timeout=timeout)
    if done.returncode != 0:
        raise RuntimeError(f"{script.name} {' '.join(map(str, args))} exited "
                           f"{done.returncode}:\n{done.stdout}{done.stderr}")
    return done.stdout


def unique_name_and_index():
    """A NAME and an INDEX (1..250) unlikely to be used by another process."""
    k = next(_counter)
    pid = os.getpid()
    return f"ipk{pid}-{k}", (pid * 7 + k) % 250 + 1


@contextlib.contextmanager
def two_hosts():
    """Make namespaces NAME-a and NAME-b, yield a :class:`Hosts`, remove them."""
    why = unavailable()
    if why:
        skip_or_fail(why)
    name, index = unique_name_and_index()
    try:
        run_script("up", name, index)
        yield Hosts(name=name, index=index, a=f"{name}-a", b=f"{name}-b",
                    addr_a=f"10.213.{index}.1", addr_b=f"10.213.{index}.2")
    finally:
        run_script("down", name)


@dataclass(frozen=True)
class SSHHosts(Hosts):
    """:class:`Hosts` with a real sshd listening on ``addr_b`` port 22.

    ``ssh_config``: the client configuration (key, known host, batch mode);
    ``state_dir``: the sshd's keys, configuration, pid file and log."""

    state_dir: Path = None
    ssh_config: Path = None

    def ssh(self, *command, timeout=SCRIPT_TIMEOUT, host=None):
        """Run ``command`` (a shell command line) on b over ssh from namespace
        a; return the :class:`subprocess.CompletedProcess` (text)."""
        argv = [*self.exec_prefix(self.a), "ssh", "-F", str(self.ssh_config),
                host or self.addr_b, "--", *command]
        return subprocess.run(argv, capture_output=True, text=True, timeout=timeout)

    def sshd_log(self):
        """What the sshd logged so far ('' if nothing)."""
        try:
            return (self.state_dir / "sshd.log").read_text(errors="replace")
        except OSError:
            return ""


@contextlib.contextmanager
def hosts_with_sshd(state_dir):
    """Two hosts (see :func:`two_hosts`) with sshd on b, its state in
    ``state_dir``; the sshd is stopped afterwards."""
    why = unavailable()
    if why:
        skip_or_fail(why)
    if not SSHD.exists():
        skip_or_fail(f"no {SSHD} (package openssh-server)",
                     f"run scripts/ci/setup.sh, or apt-get install openssh-server "
                     f"(used by {SSHD_SCRIPT})")
    state_dir = Path(state_dir)
    with two_hosts() as hosts:
        try:
            run_script("start", hosts.b, state_dir, script=SSHD_NETNS_SH, timeout=120)
            fields = {k: getattr(hosts, k) for k in ("name", "index", "a", "b", "addr_a",
                                                       "addr_b")}
            yield SSHHosts(**fields, state_dir=state_dir, ssh_config=state_dir / "ssh_config")
        finally:
            run_script("stop", state_dir, script=SSHD_NETNS_SH)
