"""The ssh launcher (:mod:`ipkernel.cluster.ssh`).

Tier 1: placement of engines on hosts, the command lines, records, errors
of bad options.  Tier 4: a second host made as a network namespace with a
real sshd (``scripts/ci/netns.sh``, ``scripts/ci/sshd-netns.sh``, through
``tests/netns.py``): a controller in namespace a listening on addr_a,
engines started over ssh in namespace b, with and without ``send_furl``,
real work, and nothing left on b after ``stop`` (also from the record in
another process, when the ssh connections are cut, and through
``ipcluster ssh --daemon``/``status``/``stop``); wrong keys, unknown host
keys and unknown hosts are reported with ssh's own words.

The blocking client must run inside namespace a, so the tier-4 parts run
this file as a script there (``ip netns exec A python test_ssh.py
SCENARIO ...``, see :func:`session`); it is not collected as a test then.
"""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ipkernel.cluster import engineset
from ipkernel.cluster.clusterfile import ClusterFileError
from ipkernel.cluster.launcher import LaunchError
from ipkernel.cluster.ssh import MARKER_ENV, REMOTE_FURL_DIR, SSHEngineSet, advice, plan
from ipkernel.clusterdir import ClusterDir
from ipkernel.pids import process_alive

from sessionkit import check, wait_registered

SESSION_TIMEOUT = 240.0
TIMEOUT = 90.0
SESSION_OK = "SSH SESSION OK"
IPCLUSTER = Path(sys.executable).with_name("ipcluster")


# -- tier 1 ---------------------------------------------------------------------------

def test_plan_fills_hosts_in_order_then_in_turn():
    engines = {"a": 2, "me@b": 1}
    assert plan(3, engines) == [("a", 2), ("me@b", 1)]
    assert plan(1, engines) == [("a", 1)]
    assert plan(6, engines) == [("a", 4), ("me@b", 2)]


def test_command_lines(tmp_path):
    cd = ClusterDir(tmp_path / "c")
    s = SSHEngineSet(cd, engines={"node1": 2, "me@node2": 1}, send_furl=True,
                     ssh_config=tmp_path / "cfg", ssh_args="-o ProxyJump=gw",
                     engine_command="/env/bin/python -m ipkernel.engine", name="job1")
    assert s.n == 3 and s.hosts == [("node1", 2), ("me@node2", 1)]
    assert s.ssh_command("node1", "true") == [
        "ssh", "-F", str(tmp_path / "cfg"), "-o", "ProxyJump=gw", "-o", "BatchMode=yes",
        "-o", "ConnectTimeout=20", "-T", "node1", "--", "true"]
    assert s.scp_command("/x/e.furl", "me@node2", s.remote_furl)[-2:] == [
        "/x/e.furl", f"me@node2:{REMOTE_FURL_DIR}/job1.furl"]
    script = s.engine_script("node1", 1)
    assert script.startswith("exec /bin/sh -c ")
    for part in [f"export {MARKER_ENV}=job1", "ipkernel-ssh-engine job1-1 pid $$",
                 "exec /env/bin/python -m ipkernel.engine --cluster-dir", "--exit-with-parent",
                 f'--furl-file "$HOME"/{REMOTE_FURL_DIR}/job1.furl']:
        assert part in script, part
    assert [m.log_file.name for m in s.members] == [
        "ipengine-node1-job1-0.log", "ipengine-node1-job1-1.log",
        "ipengine-me@node2-job1-0.log"]
    assert s.scp_command("f", "me@fe80::1", "t")[-1] == "me@[fe80::1]:t"
    shared = SSHEngineSet(cd, 1, engines={"node1": 4}, name="job2")
    assert "--furl-file" not in shared.engine_script("node1", 0)
    assert shared.hosts == [("node1", 1)]
    assert shared.check_command("node1") == "ssh node1 true"


def test_clusterfile_and_bad_options(tmp_path):
    path = tmp_path / "hosts.py"
    path.write_text("send_furl = True\nengines = {'n1': 1, 'n2': 2}\n")
    s = SSHEngineSet(tmp_path / "c", clusterfile=path)
    assert s.send_furl is True and s.n == 3 and s.engines == {"n1": 1, "n2": 2}
    assert SSHEngineSet(tmp_path / "c", clusterfile=path, send_furl=False).send_furl is False
    with pytest.raises(ValueError, match="either"):
        SSHEngineSet(tmp_path / "c")
    with pytest.raises(ClusterFileError, match="count of 'n1' must be a positive int"):
        SSHEngineSet(tmp_path / "c", engines={"n1": 0})
    with pytest.raises(ClusterFileError, match="not a host name"):
        SSHEngineSet(tmp_path / "c", engines={"-oProxyCommand=x": 1})
    with pytest.raises(ValueError, match="name may hold"):
        SSHEngineSet(tmp_path / "c", engines={"n1": 1}, name="a b")


def test_mode_and_record_round_trip(tmp_path):
    assert engineset.engine_set_class("ssh") is SSHEngineSet
    cd = ClusterDir(tmp_path / "c").create()
    s = SSHEngineSet(cd, engines={"n1": 1, "n2": 1}, send_furl=True, ssh_config="/cfg",
                     name="rec")
    s.members[0].pid, s.members[0].started, s.members[0].remote_pid = os.getpid(), 1, 4242
    s.furl_copies = {"n1": s.remote_furl}
    s.save()
    [back] = engineset.saved_sets(cd)
    assert isinstance(back, SSHEngineSet) and back.name == "rec"
    assert (back.hosts, back.send_furl, back.ssh_config) == (s.hosts, True, "/cfg")
    assert [m.state() for m in back.members] == [m.state() for m in s.members]
    assert back.furl_copies == {"n1": ".ipkernel-furls/rec.furl"}
    # our pid with another start time: not this set's ssh, so not running
    assert back.describe() == [{"job": "4242", "hosts": "n1", "state": "ended"},
                               {"job": "-", "hosts": "n2", "state": "not started"}]


def test_send_furl_needs_the_furl_file(tmp_path):
    s = SSHEngineSet(ClusterDir(tmp_path / "c").create(), engines={"n1": 1}, send_furl=True)
    with pytest.raises(LaunchError, match="ipcontroller-engine.furl, which does not exist"):
        s.start()
    assert s.poll() is None and s.describe()[0]["state"] == "not started"


def test_advice_follows_what_ssh_said():
    check = "ssh h true"
    assert "key login" in advice("root@h: Permission denied (publickey).", "h", check)
    assert "unknown" in advice("ssh: Could not resolve hostname h: Name or service not known",
                               "h", check)
    assert "known_hosts" in advice("Host key verification failed.", "h", check)
    assert "sshd running" in advice("connect to host h port 22: Connection refused", "h", check)
    assert advice("something else", "h", check).endswith("check with: ssh h true")


# -- the session (run inside namespace a by the tier-4 tests) -------------------------

def _wait(predicate, what, timeout=TIMEOUT):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        check(time.monotonic() < deadline, f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(0.1)


def _where():
    """(network namespace, the address used towards the controller) of an engine."""
    import os as _os
    import socket as _socket
    probe = _socket.socket(_socket.AF_INET, _socket.SOCK_DGRAM)
    try:
        probe.connect((CONTROLLER_ADDR, 9))     # (UDP: nothing is sent)
        address = probe.getsockname()[0]
    finally:
        probe.close()
    return _os.readlink("/proc/self/ns/net"), address, _os.getpid()


def _work(mec, engine_set, controller, addr_b):
    ids = wait_registered(mec, engine_set, 2, TIMEOUT)
    check(ids == [0, 1], f"ids {ids}")
    here = os.readlink(f"/proc/{controller.pid}/ns/net")
    places = mec.apply(_where, targets="all")
    for ns, address, _ in places:
        check(ns != here, f"an engine runs in the controller's namespace {here}")
        check(address == addr_b, f"an engine reaches the controller from {address}, not "
                                  f"{addr_b}")
    remote = sorted(str(pid) for _, _, pid in places)
    [row] = engine_set.describe()
    check(row["hosts"] == addr_b and row["state"] == "running (2 engines)", f"row {row}")
    check(sorted(row["job"].split(",")) == remote, f"row {row}, engines {remote}")
    squares = mec.map(lambda x: x * x, range(40))
    check(squares == [x * x for x in range(40)], f"map: {squares}")
    mec.execute("import os\npid = os.getpid()\ntotal = sum(range(1000))")
    check(mec.pull("total") == [499500, 499500], f"pull: {mec.pull('total')}")
    return [int(p) for p in remote]


def session(scenario, path, addr_a, addr_b, ssh_config, *rest):
    """One tier-4 scenario inside namespace a; prints ``engines PIDS`` and
    ends with :data:`SESSION_OK`.

    * ``work SEND_FURL``: two engines on b, real work, ``stop()``.
    * ``leave SEND_FURL PARENT_PID``: two engines, real work, the record
      saved; exits without stopping (the controller lives until PARENT_PID).
    * ``stop``: stops the recorded sets of the cluster directory.
    * ``drop``: one engine; its local ssh is killed: the engine must exit.
    * ``fail``: a wrong key, an unknown host key, an unknown host, an
      engine command the host does not have.
    """
    from ipkernel.client import MultiEngineClient
    from ipkernel.cluster.launcher import ControllerLauncher
    from ipkernel.clusterdir import MULTIENGINE_FURL

    global CONTROLLER_ADDR
    CONTROLLER_ADDR = addr_a
    cluster = ClusterDir(path).create()
    if scenario == "stop":
        sets = engineset.saved_sets(cluster)
        check(len(sets) == 1, f"recorded sets: {sets}")
        sets[0].stop(timeout=60)
        sets[0].forget()
        print(SESSION_OK)
        return
    if scenario == "fail":
        return _fail(cluster, addr_b, Path(ssh_config))
    parent = int(rest[1]) if scenario == "leave" else None
    controller = ControllerLauncher(cluster, ["--engine-ip", addr_a, "--engine-location",
                                              addr_a], parent_pid=parent, engine_furl=True)
    controller.start()
    controller.wait_ready(TIMEOUT)
    send_furl = scenario != "drop" and rest[0] == "1"
    n = 1 if scenario == "drop" else 2
    # left behind, the engines must outlive the controller until "stop"
    keep = ["--stop-wait", "600", "--reconnect-timeout", "600"] if scenario == "leave" else []
    engine_set = SSHEngineSet(cluster, engines={addr_b: n}, send_furl=send_furl,
                              ssh_config=ssh_config, engine_args=keep,
                              name=f"session-{scenario}-{os.getpid()}")
    engine_set.save()
    engine_set.start()
    engine_set.save()
    print("set", engine_set.name, flush=True)
    mec = MultiEngineClient(str(cluster.furl_file(MULTIENGINE_FURL)), timeout=60,
                            progress=False)
    try:
        if scenario == "drop":
            wait_registered(mec, engine_set, 1, TIMEOUT)
            [member] = engine_set.members
            print("engines", member.remote_pid, flush=True)
            os.kill(member.pid, signal.SIGKILL)       # the connection goes away
            # the engine ends by itself (before any stop(): that would end it too)
            _wait(lambda: not process_alive(member.remote_pid), "the engine on b to exit")
            _wait(lambda: not mec.get_ids(), "the engine to leave the controller")
            engine_set.stop(timeout=60)
            print(SESSION_OK)
            return
        pids = _work(mec, engine_set, controller, addr_b)
        print("engines", *pids, flush=True)
        if send_furl:
            print("furl", engine_set.remote_furl, flush=True)
        if scenario == "leave":
            print(SESSION_OK)
            return
        engine_set.stop(timeout=60)
        check(engine_set.poll() is not None, "poll() after stop")
        check(engine_set.describe()[0]["state"] == "ended", engine_set.describe())
        engine_set.stop()   # again: nothing to do
        engine_set.forget()
        _wait(lambda: not mec.get_ids(), "the engines to leave the controller")
        print(SESSION_OK)
    finally:
        mec.close()
        if scenario != "leave":
            engine_set.stop()
            controller.shutdown()


def _expect_failure(engine_set, words):
    try:
        engine_set.start()
    except LaunchError as exc:
        message = str(exc)
    else:
        engine_set.stop()
        raise AssertionError(f"{engine_set.name} started; expected ssh to say {words!r}")
    check(words in message, f"expected {words!r} in: {message}")
    check(engine_set.describe()[0]["state"] == "not started", engine_set.describe())
    print("message", json.dumps(message), flush=True)


def _fail(cluster, addr_b, ssh_config):
    state = ssh_config.parent
    text = ssh_config.read_text()
    # a key sshd does not know
    other = state / "other_key"
    if not other.exists():
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(other)],
                       check=True, timeout=60)
    wrong_key = state / "ssh_config_wrong_key"
    wrong_key.write_text(text.replace(str(state / "id_ed25519"), str(other)))
    _expect_failure(SSHEngineSet(cluster, engines={addr_b: 1}, ssh_config=wrong_key,
                                 name="wrong-key"),
                    "Permission denied (publickey)")
    # a host key nobody told us about
    empty = state / "known_hosts_empty"
    empty.write_text("")
    unknown_key = state / "ssh_config_unknown_key"
    unknown_key.write_text(text.replace(str(state / "known_hosts"), str(empty)))
    _expect_failure(SSHEngineSet(cluster, engines={addr_b: 1}, ssh_config=unknown_key,
                                 name="unknown-key"), "Host key verification failed")
    # a host name that cannot resolve (.invalid never does)
    _expect_failure(SSHEngineSet(cluster, engines={"no-such-host.invalid": 1},
                                 ssh_config=ssh_config, name="unknown-host"),
                    "Could not resolve hostname no-such-host.invalid")
    # an engine command the host does not have: poll() tells
    missing = SSHEngineSet(cluster, engines={addr_b: 1}, ssh_config=ssh_config,
                           engine_command="/no/such/python -m ipkernel.engine", name="no-python")
    missing.start()
    ended = _wait(missing.poll, "poll() to report the missing engine command")
    check("exited with status 127" in ended and "/no/such/python" in ended
           and "was not found on" in ended, ended)
    missing.stop(timeout=60)
    print("message", json.dumps(ended), flush=True)
    print(SESSION_OK)


# -- tier 4 ---------------------------------------------------------------------------

@pytest.fixture
def hosts(tmp_path):
    from netns import hosts_with_sshd
    with hosts_with_sshd(tmp_path / "sshd") as h:
        yield h


@pytest.fixture
def cluster_dir(tmp_path, reaper):
    """A cluster directory (a shared filesystem: both namespaces see it)."""
    path = reaper.add_cluster_dir(tmp_path / "cluster")
    ClusterDir(path).create()
    return path


def run_session(hosts, reaper, *args, timeout=SESSION_TIMEOUT):
    """Run :func:`session` inside namespace a; its output (asserting it ended OK)."""
    argv = [*hosts.exec_prefix(hosts.a), sys.executable, __file__, *map(str, args)]
    popen = reaper.add_popen(subprocess.Popen(argv, stdout=subprocess.PIPE,
                                              stderr=subprocess.STDOUT,
                                              stdin=subprocess.DEVNULL, text=True))
    try:
        output, _ = popen.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        popen.kill()
        output, _ = popen.communicate(timeout=30)
        raise AssertionError(f"the session did not end within {timeout:g} s:\n{output}")
    assert popen.returncode == 0 and output.strip().endswith(SESSION_OK), output
    return output


def line(output, label):
    found = [ln.split()[1:] for ln in output.splitlines() if ln.startswith(label + " ")]
    assert found, f"no '{label}' line in:\n{output}"
    return found[-1]


def assert_nothing_left(hosts, output, furl=None):
    """No process of the session's engine set and no FURL copy on b."""
    [name] = line(output, "set")
    engines = [int(p) for p in line(output, "engines")]
    probe = hosts.ssh(f"grep -lxzF {MARKER_ENV}={name} /proc/[0-9]*/environ; "
                      f"ls -d .ipkernel-furls/{name}.furl 2>/dev/null; echo probed")
    assert probe.returncode == 0 and probe.stdout.strip().endswith("probed"), probe
    assert probe.stdout.strip() == "probed", f"left on b:\n{probe.stdout}"
    for pid in engines:
        assert not Path(f"/proc/{pid}").exists() or \
            Path(f"/proc/{pid}/status").read_text().split("State:")[1].split()[0] in "ZX", \
            f"engine {pid} still runs"


@pytest.mark.tier4
@pytest.mark.timeout(400)
def test_engines_over_ssh_with_a_shared_cluster_dir(hosts, cluster_dir, reaper):
    """send_furl=False: the engines read the FURL file of the shared cluster
    directory; they run in namespace b, do real work, and stop() leaves
    nothing on b."""
    output = run_session(hosts, reaper, "work", cluster_dir, hosts.addr_a, hosts.addr_b,
                         hosts.ssh_config, "0")
    assert "furl " not in output
    assert_nothing_left(hosts, output)
    assert engineset.saved_sets(cluster_dir) == []
    assert "Accepted publickey for root" in hosts.sshd_log()


@pytest.mark.tier4
@pytest.mark.timeout(400)
def test_send_furl_and_stop_from_the_record(hosts, cluster_dir, reaper):
    """send_furl=True: the FURL copy on b is private (0600 in a 0700 folder)
    while the engines run; a second process stops the set from its record,
    which ends the engines on b and removes the copy."""
    output = run_session(hosts, reaper, "leave", cluster_dir, hosts.addr_a, hosts.addr_b,
                         hosts.ssh_config, "1", os.getpid())
    [furl] = line(output, "furl")
    modes = hosts.ssh(f"stat -c '%a %n' {REMOTE_FURL_DIR} {furl}")
    assert modes.returncode == 0, modes
    assert modes.stdout.split() == ["700", REMOTE_FURL_DIR, "600", furl], modes.stdout
    engines = [int(p) for p in line(output, "engines")]
    assert all(Path(f"/proc/{p}").exists() for p in engines), "the engines were left running"
    [recorded] = engineset.saved_sets(cluster_dir)
    assert sorted(m.remote_pid for m in recorded.members) == sorted(engines)
    run_session(hosts, reaper, "stop", cluster_dir, hosts.addr_a, hosts.addr_b,
                hosts.ssh_config)
    assert_nothing_left(hosts, output)
    assert engineset.saved_sets(cluster_dir) == []


@pytest.mark.tier4
@pytest.mark.timeout(300)
def test_a_cut_connection_ends_the_remote_engine(hosts, cluster_dir, reaper):
    """Killing the local ssh of an engine ends the engine on b (its parent,
    the sshd session, goes: --exit-with-parent), so nothing is orphaned."""
    output = run_session(hosts, reaper, "drop", cluster_dir, hosts.addr_a, hosts.addr_b,
                         hosts.ssh_config)
    assert_nothing_left(hosts, output)


@pytest.mark.tier4
@pytest.mark.timeout(300)
def test_ssh_failures_are_reported_with_ssh_words(hosts, cluster_dir, reaper):
    """A key sshd refuses, an unknown host key and an unknown host name: a
    LaunchError quoting ssh and saying what to do; nothing is started.  An
    engine command missing on the host: poll() says so (status 127)."""
    output = run_session(hosts, reaper, "fail", cluster_dir, hosts.addr_a, hosts.addr_b,
                         hosts.ssh_config)
    messages = [json.loads(ln.split(" ", 1)[1]) for ln in output.splitlines()
                if ln.startswith("message ")]
    assert len(messages) == 4, output
    assert "set up key login" in messages[0] and f"ssh -F {hosts.state_dir}" in messages[0]
    assert "known_hosts" in messages[1]
    assert "unknown" in messages[2]
    assert "install ipkernel there" in messages[3]
    probe = hosts.ssh(f"ls -A {REMOTE_FURL_DIR} 2>/dev/null; echo probed")
    assert probe.stdout.strip() == "probed", f"left on b:\n{probe.stdout}"


@pytest.mark.tier4
@pytest.mark.timeout(400)
def test_ipcluster_ssh_daemon_status_and_stop(hosts, cluster_dir, reaper, tmp_path):
    """``ipcluster ssh --clusterfile F --ssh-config C --daemon`` in namespace a:
    status lists the host with its engines registered; ``ipcluster stop``
    leaves no engine, FURL copy, record or pid file."""
    hostsfile = tmp_path / "hosts.py"
    hostsfile.write_text(f"send_furl = True\nengines = {{{hosts.addr_b!r}: 2}}\n")

    def ipcluster(*args):
        done = subprocess.run([*hosts.exec_prefix(hosts.a), str(IPCLUSTER), *map(str, args),
                               "--cluster-dir", cluster_dir], capture_output=True, text=True,
                              timeout=SESSION_TIMEOUT, stdin=subprocess.DEVNULL)
        return done.stdout + done.stderr, done.returncode

    out, code = ipcluster("ssh", "-n", 2, "--clusterfile", hostsfile, "--ssh-config",
                          hosts.ssh_config, "--daemon")
    assert code == 0 and "2 engines (ssh)" in out, out
    out, code = ipcluster("status")
    assert code == 0 and "registered with the controller: engines [0, 1]" in out, out
    [row] = [ln.split() for ln in out.splitlines() if hosts.addr_b in ln]
    name, mode, pids, host, *state = row
    assert (mode, host, " ".join(state)) == ("ssh", hosts.addr_b, "running (2 engines)"), row
    furl = f"{REMOTE_FURL_DIR}/{name}.furl"
    assert hosts.ssh(f"test -f {furl}").returncode == 0, f"no {furl} on b"
    out, code = ipcluster("stop")
    assert code == 0, out
    assert_nothing_left(hosts, f"set {name}\nengines {pids.replace(',', ' ')}\n")
    assert engineset.saved_sets(cluster_dir) == []
    assert not list((cluster_dir / "pid").glob("*.pid"))


CONTROLLER_ADDR = None

if __name__ == "__main__":
    session(*sys.argv[1:])
