"""ssh engines: engines on other hosts, each started with ``ssh host -- ...``.

:class:`SSHEngineSet` takes its hosts from ``engines={'host': count}`` (also
``'user@host'``) or a clusterfile (:mod:`ipkernel.cluster.clusterfile`).
For each host it first runs one short ssh command (``true``, or making the
private FURL folder), so a host that cannot be reached or logged into is
reported by :meth:`~SSHEngineSet.start` with ssh's own words before any
engine starts.  Then:

* with ``send_furl`` the engine FURL file of the cluster directory is
  copied with ``scp`` to ``~/.ipkernel-furls/<set name>.furl`` on the host
  (file 0600, folder 0700) and the engines get ``--furl-file`` that path;
  without it they get the same ``--cluster-dir`` path (a shared filesystem).
* every engine is one ``ssh [-F ssh_config] [ssh_args] host -- <script>``
  process here, the local handle, whose output (ssh's and the engine's) is
  appended to ``log/ipengine-<host>-<set name>-<k>.log``.  The remote script
  (``/bin/sh``) prints the engine's pid, marks the engine's environment with
  :data:`MARKER_ENV` and ``exec``s the engine with ``--exit-with-parent``:
  the engine's parent is then the sshd session, so when the ssh connection
  goes away (this side killed, the network gone) the session ends and the
  engine exits within a second or two: no orphaned remote engines.

:meth:`~SSHEngineSet.stop` runs one ssh command per host that sends SIGTERM
to the set's processes there (found by their marker; by the recorded pids
where the host has no ``/proc``), SIGKILL to those still there after a
while, removes the copied FURL file and says what is left; then it waits
for the local ssh processes to end.  The record holds the hosts, the local
ssh pids (with their start times) and the remote pids, so ``ipcluster
stop`` in another process does the same.
"""
import re
import shlex
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from ipkernel.cluster import clusterfile as clusterfiles
from ipkernel.cluster.engineset import EngineSet
from ipkernel.cluster.launcher import LaunchError, ProcessLauncher, child_env, read_log, tail
from ipkernel.clusterdir import ENGINE_FURL
from ipkernel.pids import process_alive, signal_quietly, start_ticks

#: The environment variable marking a set's processes on the remote host.
MARKER_ENV = "IPKERNEL_SSH_SET"
#: The folder (relative to the remote home) of the copied FURL files.
REMOTE_FURL_DIR = ".ipkernel-furls"
#: The line the remote script prints before it starts the engine.
PID_LINE = "ipkernel-ssh-engine"
#: The line the remote stop script ends with.
LEFT_LINE = "ipkernel-ssh-left:"
#: Bound of one short ssh or scp command (seconds).
COMMAND_TIMEOUT = 60.0
#: ssh options added after the user's (for ssh the first value given wins).
DEFAULT_OPTIONS = ("-o", "BatchMode=yes", "-o", "ConnectTimeout=20")
POLL_INTERVAL = 0.05
#: ssh's exit status for its own errors (connection, authentication).
SSH_FAILED = 255
#: The remote shell's exit status for a program it cannot find.
COMMAND_NOT_FOUND = 127


def plan(n, engines):
    """``[(host, count), ...]`` placing ``n`` engines on ``engines``' hosts:
    hosts in order up to their counts, any surplus one by one in turn."""
    counts = {host: 0 for host in engines}
    left = n
    for host, count in engines.items():
        counts[host] = min(count, left)
        left -= counts[host]
    hosts = list(engines)
    k = 0
    while left > 0:
        counts[hosts[k % len(hosts)]] += 1
        left -= 1
        k += 1
    return [(host, count) for host, count in counts.items() if count]


def advice(text, host, check):
    """What to do about ssh's complaint ``text`` for ``host``; ``check`` is
    the command that shows whether it is fixed."""
    low = text.lower()
    if "could not resolve hostname" in low or "name or service not known" in low:
        what = (f"the host name {host!r} is unknown: correct it in the clusterfile or "
                f"add a Host entry for it to the ssh config")
    elif "host key verification failed" in low or "no host key is known" in low:
        what = (f"{host}'s host key is not in known_hosts: log in once by hand (ssh {host}) "
                f"or add it with ssh-keyscan, after checking it")
    elif "permission denied" in low:
        what = (f"ssh could not log into {host} without a question: set up key login "
                f"(ssh-copy-id, an agent, IdentityFile in the ssh config)")
    elif any(w in low for w in ("connection refused", "timed out", "no route to host",
                                "network is unreachable", "connection closed")):
        what = f"is sshd running on {host}, and reachable from here?"
    else:
        what = f"fix what ssh says for {host}"
    return f"{what}; check with: {check}"


@dataclass
class _Engine:
    """One engine: ``host``, its number ``k`` on that host, the local ssh
    process (``launcher`` in the process that started it; ``pid`` and
    ``started`` in every process) and the engine's pid on the host."""

    host: str
    k: int
    log_file: Path
    launcher: ProcessLauncher | None = None
    pid: int | None = None
    started: int | None = None
    remote_pid: int | None = None

    def running(self):
        """True while the local ssh process runs (not a process reusing its pid)."""
        if self.launcher is not None and self.launcher.process is not None:
            return self.launcher.is_alive()
        return (self.pid is not None and process_alive(self.pid)
                and start_ticks(self.pid) == self.started)

    def exit_code(self):
        return self.launcher.exit_code if self.launcher is not None else None

    def output(self):
        if self.launcher is not None:
            return self.launcher.log_text()
        return read_log(self.log_file)

    def state(self):
        return {"host": self.host, "k": self.k, "log_file": str(self.log_file), "pid": self.pid,
                "started": self.started, "remote_pid": self.remote_pid}


class SSHEngineSet(EngineSet):
    """Engines of cluster directory ``cluster`` on other hosts, over ssh.

    ``engines``: ``{'host': count}`` (or ``'user@host'`` keys), or
    ``clusterfile``: the path of a clusterfile giving them (and
    ``send_furl``).  ``n`` engines are placed on those hosts (see
    :func:`plan`; default: the sum of the counts).  ``send_furl``: copy the
    engine FURL file to each host (default: the clusterfile's, else False);
    ``ssh_config``: a file given to ssh and scp as ``-F``; ``ssh_args``:
    more ssh/scp options (a list or a shell-like string, e.g.
    ``"-o ProxyJump=gw"``); ``ssh``/``scp``: the programs.  The other
    arguments are those of :class:`~ipkernel.cluster.engineset.EngineSet`.
    """

    mode = "ssh"

    def __init__(self, cluster, n=None, *, engines=None, clusterfile=None, send_furl=None,
                 ssh_config=None, ssh_args=(), ssh="ssh", scp="scp", engine_command=None,
                 engine_args=(), name=None):
        if (engines is None) == (clusterfile is None):
            raise ValueError("give the hosts either as engines={'host': count} or as "
                             "clusterfile=PATH (one of the two)")
        if clusterfile is not None:
            loaded = clusterfiles.load(clusterfile)
            engines = loaded.engines
            if send_furl is None:
                send_furl = loaded.send_furl
        else:
            engines = clusterfiles.check_engines(engines, "engines")
        total = sum(engines.values())
        super().__init__(cluster, total if n is None else n, engine_command=engine_command,
                         engine_args=engine_args, name=name)
        if not re.fullmatch(r"[A-Za-z0-9_.-]+", self.name):
            raise ValueError(f"an ssh engine set's name may hold letters, digits, '.', '_' and "
                             f"'-' only (it names files on the hosts), not {self.name!r}")
        self.engines = engines
        self.clusterfile = str(clusterfile) if clusterfile is not None else None
        self.send_furl = bool(send_furl)
        # (absolute: ipcluster stop may run in another directory)
        self.ssh_config = str(Path(ssh_config).expanduser().absolute()) if ssh_config else None
        if isinstance(ssh_args, str):
            ssh_args = shlex.split(ssh_args)
        self.ssh_args = [str(a) for a in ssh_args]
        self.ssh = ssh
        self.scp = scp
        self.hosts = plan(self.n, engines)
        self.members = [_Engine(host, k, self._log_file(host, k))
                        for host, count in self.hosts for k in range(count)]
        #: host -> the copied FURL file there (relative to the remote home)
        self.furl_copies = {}

    # -- command lines ------------------------------------------------------------------

    def _log_file(self, host, k):
        safe = re.sub(r"[^A-Za-z0-9_.@-]", "_", host)
        return self.cluster.log / f"ipengine-{safe}-{self.name}-{k}.log"

    @property
    def remote_furl(self):
        """The FURL copy's path on a host, relative to the remote home."""
        return f"{REMOTE_FURL_DIR}/{self.name}.furl"

    def _options(self):
        config = ["-F", self.ssh_config] if self.ssh_config else []
        return [*config, *self.ssh_args, *DEFAULT_OPTIONS]

    def ssh_command(self, host, script):
        """``ssh [-F cfg] [ssh_args] host -- script`` (``script``: a shell command line)."""
        return [self.ssh, *self._options(), "-T", host, "--", script]

    def scp_command(self, source, host, target):
        """``scp [-F cfg] [ssh_args] -q source host:target``."""
        user, at, name = host.rpartition("@")
        if ":" in name and not name.startswith("["):
            name = f"[{name}]"      # an IPv6 address: scp needs it in brackets
        return [self.scp, *self._options(), "-q", str(source), f"{user}{at}{name}:{target}"]

    def check_command(self, host):
        """What a user runs to see whether ssh to ``host`` works."""
        return shlex.join([self.ssh, *(["-F", self.ssh_config] if self.ssh_config else []),
                           *self.ssh_args, host, "true"])

    def engine_script(self, host, k):
        """The remote shell command that starts engine ``k`` on ``host`` (see the module doc)."""
        argv = self.engine_argv("--exit-with-parent")
        engine = shlex.join(argv)
        lines = [f"export {MARKER_ENV}={shlex.quote(self.name)}"]
        if self.send_furl:
            furl = f'"$HOME"/{shlex.quote(self.remote_furl)}'
            lines.append(f"chmod 600 {furl} || exit 1")
            engine += f" --furl-file {furl}"
        lines.append(f'echo "{PID_LINE} {self.name}-{k} pid $$"')
        lines.append(f"exec {engine}")
        # one /bin/sh whatever the login shell; exec keeps the pid: the engine's
        # parent is the sshd session
        return "exec /bin/sh -c " + shlex.quote("\n".join(lines))

    def stop_script(self, host, grace=5.0):
        """The remote shell command that ends this set's processes on ``host``
        (SIGTERM, SIGKILL after ``grace`` seconds), removes the FURL copy and
        prints :data:`LEFT_LINE` with the pids still there."""
        pids = " ".join(str(e.remote_pid) for e in self.members
                        if e.host == host and e.remote_pid)
        marker = shlex.quote(f"{MARKER_ENV}={self.name}")
        rounds = max(1, int(grace * 10))
        lines = [
            f"pids={shlex.quote(pids)}",
            # the marker needs /proc and GNU grep -z; else the recorded pids
            "scan=pids",
            "if [ -r /proc/self/environ ] && printf 'x\\000' | grep -qxzF x 2>/dev/null; then",
            "  scan=marker",
            "fi",
            "found() {",
            '  if [ "$scan" = marker ]; then',
            f"    grep -lxzF {marker} /proc/[0-9]*/environ 2>/dev/null | cut -d/ -f3 | "
            "grep -vx $$",
            "  else for p in $pids; do kill -0 $p 2>/dev/null && echo $p; done; fi",
            "}",
            'left=$(found); [ -n "$left" ] && kill -TERM $left 2>/dev/null',
            f'i=0; while [ -n "$left" ] && [ $i -lt {rounds} ]; do',
            "  sleep 0.1 2>/dev/null || sleep 1; i=$((i+1)); left=$(found)",
            "done",
            'if [ -n "$left" ]; then kill -KILL $left 2>/dev/null; sleep 1; fi',
        ]
        if host in self.furl_copies or self.send_furl:
            furl = f'"$HOME"/{shlex.quote(self.remote_furl)}'
            lines.append(f'rm -f {furl}; rmdir "$HOME"/{REMOTE_FURL_DIR} 2>/dev/null')
        lines.append(f'echo "{LEFT_LINE}" $(found)')
        return "exec /bin/sh -c " + shlex.quote("\n".join(lines))

    # -- running short commands ---------------------------------------------------------

    def _run(self, argv, host, what, timeout=COMMAND_TIMEOUT):
        """Run a short ssh/scp command; its stdout, or LaunchError quoting its stderr."""
        try:
            done = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True,
                                  text=True, timeout=timeout, env=child_env())
        except FileNotFoundError:
            raise LaunchError(f"cannot {what}: {argv[0]!r} was not found; install the "
                              f"OpenSSH client (apt-get install openssh-client) or give "
                              f"its path (ssh=..., scp=...)", name=self.name) from None
        except subprocess.TimeoutExpired:
            raise LaunchError(f"cannot {what}: {argv[0]} did not finish within {timeout:g} s; "
                              f"{advice('timed out', host, self.check_command(host))}",
                              name=self.name) from None
        if done.returncode != 0:
            said = done.stderr.strip() or done.stdout.strip() or "(no message)"
            raise LaunchError(f"cannot {what}: {argv[0]} exited with status {done.returncode}: "
                              f"{said}\n{advice(said, host, self.check_command(host))}",
                              name=self.name, exit_code=done.returncode)
        return done.stdout

    # -- the launcher -------------------------------------------------------------------

    def start(self):
        """Check ssh to every host (and copy the FURL with ``send_furl``), then
        start the engines; return once each remote script reported its
        engine's pid.  LaunchError with ssh's words and what to do; engines
        already started are stopped again then."""
        if any(e.running() for e in self.members):
            raise RuntimeError(f"{self.name} is already running")
        furl = self.cluster.furl_file(ENGINE_FURL)
        if self.send_furl and not furl.is_file():
            raise LaunchError(f"send_furl needs the engine FURL file {furl}, which does not "
                              f"exist: start the controller first, with its engine FURL file "
                              f"(not --no-engine-furl)", name=self.name)
        hosts = [host for host, _ in self.hosts]
        for host in hosts:
            if self.send_furl:
                prepare = (f"umask 077 && mkdir -p {REMOTE_FURL_DIR} && "
                           f"chmod 700 {REMOTE_FURL_DIR}")
            else:
                prepare = "true"
            self._run(self.ssh_command(host, prepare), host, f"log into {host} with ssh")
        try:
            if self.send_furl:
                for host in hosts:
                    self.furl_copies[host] = self.remote_furl
                    self._run(self.scp_command(furl, host, self.remote_furl), host,
                              f"copy the engine FURL file to {host}")
            for member in self.members:
                self._start_one(member)
            self._wait_for_pids(time.monotonic() + COMMAND_TIMEOUT)
        except BaseException:
            try:
                self.stop()
            except LaunchError:
                pass
            raise

    def _start_one(self, member):
        argv = self.ssh_command(member.host, self.engine_script(member.host, member.k))
        member.launcher = ProcessLauncher(f"ipengine-{member.host}-{member.k}", argv,
                                          member.log_file, env=child_env())
        member.remote_pid = None
        try:
            member.pid = member.launcher.start()
        except OSError as exc:
            raise LaunchError(f"cannot run {argv[0]}: {exc.strerror or exc}; install the "
                              f"OpenSSH client or give its path (ssh=...)", name=self.name,
                              log_file=member.log_file) from None
        member.started = start_ticks(member.pid)

    def _wait_for_pids(self, deadline):
        pattern = re.compile(rf"^{re.escape(PID_LINE)} (\S+)-(\d+) pid (\d+)$", re.M)
        waiting = list(self.members)
        while waiting:
            for member in list(waiting):
                for found in pattern.finditer(member.output()):
                    if found.group(1) == self.name and int(found.group(2)) == member.k:
                        member.remote_pid = int(found.group(3))
                if member.remote_pid is not None:
                    waiting.remove(member)
                elif not member.running():
                    raise LaunchError(self._ended(member), name=self.name,
                                      log_file=member.log_file,
                                      exit_code=member.exit_code())
            if waiting and time.monotonic() >= deadline:
                hosts = ", ".join(sorted({m.host for m in waiting}))
                raise LaunchError(f"the engines on {hosts} did not start within "
                                  f"{COMMAND_TIMEOUT:g} s; see "
                                  f"{', '.join(str(m.log_file) for m in waiting)}",
                                  name=self.name)
            if waiting:
                time.sleep(POLL_INTERVAL)

    def _ended(self, member):
        """Why ``member``'s ssh session ended: its status, ssh's words, what to do."""
        code = member.exit_code()
        said = tail(member.output()) or "(no output)"
        status = (f"exited with status {code}" if code is not None
                  else "is no longer running")
        text = (f"ssh to {member.host} (engine {member.k}, pid {member.pid}) {status}; "
                f"the last lines of its output ({member.log_file}):\n{said}")
        if code == SSH_FAILED:
            text += "\n" + advice(said, member.host, self.check_command(member.host))
        elif code == COMMAND_NOT_FOUND:
            text += (f"\nthe engine command {self.engine_command[0]} was not found on "
                     f"{member.host}: install ipkernel there at the same path (or on a shared "
                     f"filesystem), or give the remote engine command (--engine-cmd, "
                     f"engine_command=...)")
        return text

    def poll(self):
        """None while the engines may still run; else why they ended: the first
        ssh that failed itself (status 255: connection, login), or, once every
        session has ended, the last one's output."""
        if not any(m.pid for m in self.members):
            return None
        for member in self.members:
            if member.pid and not member.running() and member.exit_code() == SSH_FAILED:
                return self._ended(member)
        if any(m.running() for m in self.members):
            return None
        ended = [m for m in self.members if m.pid]
        return self._ended(ended[-1])

    def stop(self, timeout=30.0):
        """End the set's processes on every host and remove the FURL copies
        (one ssh command per host), then wait for the local ssh sessions;
        LaunchError if something is left after ``timeout`` seconds or a host
        could not be reached (its ssh sessions are ended then, which ends
        the engines through ``--exit-with-parent``).  Safe to call again."""
        deadline = time.monotonic() + timeout
        problems = []
        hosts = [host for host, _ in self.hosts]
        touched = {m.host for m in self.members if m.pid} | set(self.furl_copies)
        for host in hosts:
            if host not in touched:
                continue
            left = max(1.0, deadline - time.monotonic())
            try:
                out = self._run(self.ssh_command(host, self.stop_script(host, grace=left / 3)),
                                host, f"stop the engines on {host}", timeout=left)
            except LaunchError as exc:
                problems.append(str(exc))
                continue
            self.furl_copies.pop(host, None)
            remaining = out.rsplit(LEFT_LINE, 1)[-1].split() if LEFT_LINE in out else ["?"]
            if remaining:
                problems.append(f"processes {' '.join(remaining)} of {self.name} are still "
                                f"running on {host}")
        self._end_local(deadline)
        if problems:
            raise LaunchError("; ".join(problems), name=self.name)

    def _end_local(self, deadline):
        """Wait for the local ssh processes (SIGTERM, then SIGKILL, near the deadline)."""
        grace = time.monotonic() + max(0.5, (deadline - time.monotonic()) / 2)
        signalled = set()
        while True:
            running = [m for m in self.members if m.pid and m.running()]
            if not running:
                break
            now = time.monotonic()
            for member in running:
                if now >= grace and member.pid not in signalled:
                    signal_quietly(member.pid, signal.SIGTERM)
                    signalled.add(member.pid)
                if now >= deadline:
                    signal_quietly(member.pid, signal.SIGKILL)
            if now >= deadline + 2:
                raise LaunchError(f"ssh processes {[m.pid for m in running]} of {self.name} "
                                  f"did not end", name=self.name)
            time.sleep(POLL_INTERVAL)
        for member in self.members:
            if member.launcher is not None:
                member.launcher.wait(1.0)   # reap

    def describe(self):
        """One row per host: the remote engine pids, the host and how many of
        its ssh sessions run."""
        rows = []
        for host, count in self.hosts:
            mine = [m for m in self.members if m.host == host]
            pids = ",".join(str(m.remote_pid) for m in mine if m.remote_pid) or "-"
            if not any(m.pid for m in mine):
                state = "not started"
            else:
                up = sum(1 for m in mine if m.running())
                state = (f"running ({up} engines)" if up == count
                         else f"{up} of {count} running" if up else "ended")
            rows.append({"job": pids, "hosts": host, "state": state})
        return rows

    # -- records ------------------------------------------------------------------------

    def state(self):
        return {"engines": self.engines, "hosts": self.hosts, "send_furl": self.send_furl,
                "ssh_config": self.ssh_config, "ssh_args": self.ssh_args, "ssh": self.ssh,
                "scp": self.scp, "clusterfile": self.clusterfile,
                "furl_copies": self.furl_copies,
                "members": [m.state() for m in self.members]}

    @classmethod
    def from_record(cls, cluster, record):
        state = record.get("state") or {}
        found = cls(cluster, record["n"], engines=dict(state["engines"]),
                    send_furl=state.get("send_furl"), ssh_config=state.get("ssh_config"),
                    ssh_args=state.get("ssh_args") or (), ssh=state.get("ssh") or "ssh",
                    scp=state.get("scp") or "scp", name=record["name"])
        found.clusterfile = state.get("clusterfile")
        found.hosts = [(host, count) for host, count in state.get("hosts") or found.hosts]
        found.furl_copies = dict(state.get("furl_copies") or {})
        found.members = [_Engine(m["host"], m["k"], Path(m["log_file"]), pid=m.get("pid"),
                                 started=m.get("started"), remote_pid=m.get("remote_pid"))
                         for m in state.get("members") or ()]
        return found
