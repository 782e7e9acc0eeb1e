"""Tier 1: the bench between two "hosts" without making any namespace.

The placements (which namespace runs what, at which address), the command
line of the remote modes, the refusals without root or ``ip netns``, the
set-up / tear-down order of :func:`bench.hosts.run_between_hosts` (with the
script and the inner run replaced by fakes), the separate ratio against the
encrypted peers, and the throwaway certificates (a real TLS handshake over a
socket pair).
"""
import signal
import socket
import ssl
import subprocess
import threading

import pytest
from benchload import load

pytestmark = [pytest.mark.tier1, pytest.mark.timeout(60)]

cli = load("bench.__main__")
from bench import certs, hosts, report, workloads  # noqa: E402
from bench.systems import DEFAULT_SYSTEMS, ENCRYPTED_PEERS, SYSTEMS  # noqa: E402


def test_placements_put_the_controller_in_a_the_engines_in_b_and_the_client_where_asked():
    local = hosts.Placement()
    assert not local.remote and local.server_ns is None and local.prefix(None) == []
    near = hosts.Placement(hosts.REMOTE_ENGINES, "bx", 7)
    far = hosts.Placement(hosts.REMOTE_CLIENT, "bx", 7)
    for p in (near, far):
        assert (p.server_ns, p.engine_ns) == ("bx-a", "bx-b")
        assert (p.server_addr, p.engine_addr) == ("10.213.7.1", "10.213.7.2")
    assert near.client_ns == "bx-a" and near.client_facing_addr == "127.0.0.1"
    assert far.client_ns == "bx-b" and far.client_facing_addr == "10.213.7.1"
    assert near.prefix(near.engine_ns) == ["ip", "netns", "exec", "bx-b"]
    assert "client in b" in far.describe() and "client in a" in near.describe()


def test_placement_round_trips_through_the_hidden_option_and_refuses_nonsense():
    for p in (hosts.Placement(), hosts.Placement(hosts.REMOTE_CLIENT, "bench-12", 250)):
        assert hosts.Placement.decode(p.encode()) == p
    with pytest.raises(ValueError, match="unknown placement 'sideways'"):
        hosts.Placement("sideways")
    with pytest.raises(ValueError, match="needs a namespace name"):
        hosts.Placement(hosts.REMOTE_ENGINES)


def test_remote_flags_choose_the_mode_and_add_the_encrypted_peers():
    assert cli.parse_args([]).mode == hosts.LOCAL
    assert cli.parse_args([]).systems.split(",") == list(DEFAULT_SYSTEMS)
    near = cli.parse_args(["--remote-engines"])
    assert near.mode == hosts.REMOTE_ENGINES and near.placement is None
    assert near.systems.split(",") == list(DEFAULT_SYSTEMS + ENCRYPTED_PEERS)
    far = cli.parse_args(["--remote-client", "--systems", "ipkernel"])
    assert far.mode == hosts.REMOTE_CLIENT and far.systems == "ipkernel"
    with pytest.raises(SystemExit):
        cli.parse_args(["--remote-engines", "--remote-client"])


def test_unknown_system_is_refused_naming_the_choices(capsys):
    with pytest.raises(SystemExit):
        cli.parse_args(["--systems", "ipkernel,spark"])
    err = capsys.readouterr().err
    assert "unknown system(s) in --systems: spark" in err and "dask-tls" in err


def test_every_system_says_whether_it_is_an_encrypted_configuration():
    import importlib

    flagged = set()
    for name, module, cls, _requirement in SYSTEMS:
        system = getattr(importlib.import_module(module), cls)
        assert system.name == name
        if system.encrypted:
            flagged.add(name)
    assert flagged == set(ENCRYPTED_PEERS)


def test_inner_run_is_the_same_command_in_the_clients_namespace():
    p = hosts.Placement(hosts.REMOTE_CLIENT, "bx", 3)
    argv = hosts.inner_argv(["--remote-client", "--quick"], p)
    assert argv[:4] == ["ip", "netns", "exec", "bx-b"]
    assert argv[5:] == ["-m", "bench", "--remote-client", "--quick", "--placement", p.encode()]
    parsed = cli.parse_args(argv[7:])
    assert hosts.Placement.decode(parsed.placement) == p


@pytest.mark.parametrize("patch, said", [
    ("geteuid", "needs root"),
    ("which", "apt-get install iproute2"),
])
def test_refuses_clearly_without_root_or_ip_netns(monkeypatch, patch, said):
    if patch == "geteuid":
        monkeypatch.setattr(hosts.os, "geteuid", lambda: 1000)
    else:
        monkeypatch.setattr(hosts.os, "geteuid", lambda: 0)
        monkeypatch.setattr(hosts.shutil, "which", lambda name: None)
    made = []
    monkeypatch.setattr(hosts, "netns", lambda *args: made.append(args) or "")
    lines = []
    assert hosts.run_between_hosts(["--remote-engines"], hosts.REMOTE_ENGINES, 10,
                                   log=lines.append) == 2
    assert made == [] and len(lines) == 1 and said in lines[0]


class FakeChild:
    """Stands for the inner bench: ``wait`` returns ``status`` or raises ``exc``."""

    def __init__(self, status=0, exc=None):
        self.status, self.exc, self.signals, self.killed = status, exc, [], False

    def wait(self, timeout=None):
        if self.exc is not None:
            exc, self.exc = self.exc, None
            raise exc
        return self.status

    def poll(self):
        return None if self.exc is not None or not (self.signals or self.killed) else 0

    def send_signal(self, signum):
        self.signals.append(signum)

    def kill(self):
        self.killed = True


@pytest.fixture
def fake_hosts(monkeypatch):
    """Namespaces that are only recorded, and an inner run that is a FakeChild."""
    calls, state = [], {"child": FakeChild(), "up_fails": False}

    def netns(*args):
        calls.append(args[0])
        if args[0] == "up" and state["up_fails"]:
            raise RuntimeError("netns.sh up bx 1 exited 1: RTNETLINK answers: File exists")
        return f"netns.sh: {args[0]} done\n"

    def popen(argv, **kwargs):
        state["argv"], state["kwargs"] = argv, kwargs
        return state["child"]
    monkeypatch.setattr(hosts, "unavailable", lambda: None)
    monkeypatch.setattr(hosts, "netns", netns)
    monkeypatch.setattr(hosts.subprocess, "Popen", popen)
    state["calls"] = calls
    return state


def test_namespaces_are_made_the_run_happens_inside_then_they_are_removed(fake_hosts):
    fake_hosts["child"] = FakeChild(status=0)
    lines = []
    assert hosts.run_between_hosts(["--remote-engines"], hosts.REMOTE_ENGINES, 10,
                                   log=lines.append) == 0
    assert fake_hosts["calls"] == ["up", "down"]
    assert fake_hosts["argv"][:3] == ["ip", "netns", "exec"]
    assert fake_hosts["argv"][3].endswith("-a")   # the client sits with the controller
    assert fake_hosts["kwargs"]["start_new_session"] is True
    assert any("made namespaces" in line for line in lines)
    assert lines[-1] == "netns.sh: down done"


def test_ctrl_c_stops_the_inner_run_once_and_still_removes_the_namespaces(fake_hosts):
    child = fake_hosts["child"] = FakeChild(exc=KeyboardInterrupt())
    before = signal.getsignal(signal.SIGINT)
    lines = []
    assert hosts.run_between_hosts(["--remote-client"], hosts.REMOTE_CLIENT, 10,
                                   log=lines.append) == 130
    assert child.signals == [signal.SIGINT] and not child.killed
    assert fake_hosts["calls"] == ["up", "down"]
    assert any("interrupted" in line for line in lines)
    assert signal.getsignal(signal.SIGINT) is before   # suspended only during the clean-up


def test_an_inner_run_that_outlives_its_bound_is_stopped_and_the_namespaces_removed(fake_hosts):
    child = fake_hosts["child"] = FakeChild(exc=subprocess.TimeoutExpired("bench", 1))
    lines = []
    assert hosts.run_between_hosts([], hosts.REMOTE_ENGINES, 10, log=lines.append) == 1
    assert child.signals == [signal.SIGINT]
    assert fake_hosts["calls"] == ["up", "down"]
    assert any("did not end within 190 s" in line for line in lines)


def test_a_failed_set_up_is_said_in_one_line_and_what_was_made_is_removed(fake_hosts):
    fake_hosts["up_fails"] = True
    lines = []
    assert hosts.run_between_hosts([], hosts.REMOTE_ENGINES, 10, log=lines.append) == 1
    assert "argv" not in fake_hosts
    assert fake_hosts["calls"] == ["up", "down"]
    assert lines[0].startswith("python -m bench: could not make the namespaces: netns.sh up")


def test_encrypted_peers_get_their_own_ratio_beside_the_defaults():
    metrics = [workloads.Metric("a.x", "(a) latency", "ms/call", workloads.LOWER)]
    cell = lambda *samples: {"samples": list(samples), "errors": []}  # noqa: E731
    results = {"a.x": {"ipkernel": cell(2.0), "dask": cell(4.0), "dask-tls": cell(8.0),
                       "ipyparallel": cell(5.0), "ipyparallel-curve": cell(10.0)}}
    names = ["ipkernel", "ipyparallel", "ipyparallel-curve", "dask", "dask-tls"]
    (row,) = report.summarize(metrics, results, names, ["ipyparallel-curve", "dask-tls"])
    assert (row["best_peer"], row["ratio"]) == ("dask", pytest.approx(0.5))
    assert (row["best_encrypted_peer"], row["ratio_encrypted"]) == ("dask-tls",
                                                                    pytest.approx(0.25))
    assert row["ipkernel_leads"] and row["ipkernel_leads_encrypted"]
    text = report.table([row], names, ["ipyparallel-curve", "dask-tls"])
    assert "ipkernel/best encrypted peer" in text
    assert "0.50 (vs dask)" in text and "0.25 (vs dask-tls)" in text
    assert "dask-tls" in report.legend(["dask-tls"])
    (plain,) = report.summarize(metrics, results, ["ipkernel", "dask"])
    assert "ratio_encrypted" not in plain
    assert "encrypted" not in report.table([plain], ["ipkernel", "dask"])


def test_throwaway_certificates_make_a_verified_tls_connection(tmp_path):
    paths = certs.make(tmp_path, ["127.0.0.1", "10.213.9.1"])
    assert oct(paths["key"].stat().st_mode & 0o777) == "0o600"
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.load_cert_chain(paths["cert"], paths["key"])
    client_ctx = ssl.create_default_context(cafile=str(paths["ca"]))   # verifies, with names
    left, right = socket.socketpair()
    got = {}

    def serve():
        with server_ctx.wrap_socket(right, server_side=True) as tls:
            got["server"] = tls.recv(5)
    thread = threading.Thread(target=serve)
    thread.start()
    try:
        left.settimeout(20)
        with client_ctx.wrap_socket(left, server_hostname="10.213.9.1") as tls:
            tls.sendall(b"hello")
            assert tls.version() in ("TLSv1.2", "TLSv1.3")
    finally:
        thread.join(20)
    assert got["server"] == b"hello"


def test_scale_summary_gathers_the_execute_row_of_each_engine_count(tmp_path):
    metric = workloads.Metric("a.execute_all", "(a) execute", "ms/call", workloads.LOWER)
    paths = []
    for engines, ours in ((32, 10.0), (64, 20.0)):
        rows = report.summarize([metric], {"a.execute_all": {
            "ipkernel": {"samples": [ours], "errors": []},
            "dask": {"samples": [40.0], "errors": []}}}, ["ipkernel", "dask"])
        path = tmp_path / f"r-scale{engines}.json"
        report.write_json(path, {"engines": engines, "systems": ["ipkernel", "dask"],
                                 "encrypted_peers": []}, rows)
        paths.append(path)
    paths.append(tmp_path / "r-scale128.json")   # that run wrote nothing
    rows, systems, encrypted = report.scale_rows(paths)
    assert systems == ["ipkernel", "dask"] and encrypted == []
    assert [r["label"] for r in rows] == ["(a) execute('a=1') on all 32 engines",
                                          "(a) execute('a=1') on all 64 engines"]
    text = report.table(rows, systems)
    assert "0.25 (vs dask)" in text and "0.50 (vs dask)" in text


def test_runs_of_one_system_each_are_merged_side_by_side(tmp_path):
    metric = workloads.Metric("a.execute_all", "(a) execute", "ms/call", workloads.LOWER)
    parts = []
    for name, samples in (("ipkernel", [10.0, 12.0, 11.0]), ("dask", [40.0, 44.0]),
                          ("dask-tls", [50.0])):
        rows = report.summarize([metric], {"a.execute_all": {
            name: {"samples": samples, "errors": []}}}, [name])
        path = tmp_path / f"r-scale32-{name}.json"
        report.write_json(path, {"engines": 32, "systems": [name]}, rows)
        parts.append(path)
    parts.append(tmp_path / "r-scale32-ipyparallel.json")  # that run wrote nothing
    merged = tmp_path / "r-scale32.json"
    names = ["ipkernel", "ipyparallel", "dask", "dask-tls"]
    assert report.merge_runs(parts, merged, names, ["dask-tls"], {"engines": 32})
    rows, systems, encrypted = report.scale_rows([merged])
    assert systems == names and encrypted == ["dask-tls"]
    (row,) = rows
    assert row["systems"]["ipkernel"]["samples"] == [10.0, 12.0, 11.0]
    assert row["systems"]["ipyparallel"]["samples"] == []
    assert row["best_peer"] == "dask" and row["ratio"] == pytest.approx(11.0 / 42.0)
    assert row["ratio_encrypted"] == pytest.approx(11.0 / 50.0)
    assert not report.merge_runs([tmp_path / "none.json"], tmp_path / "x.json", names, [], {})
    assert not (tmp_path / "x.json").exists()


def test_default_time_bound_grows_with_the_encrypted_peers():
    assert cli.parse_args([]).timeout == cli.FULL_TIMEOUT
    assert cli.parse_args(["--systems", "ipkernel"]).timeout == cli.FULL_TIMEOUT
    assert cli.parse_args(["--remote-engines"]).timeout == pytest.approx(cli.FULL_TIMEOUT * 5 / 3)
    assert cli.parse_args(["--remote-client", "--quick"]).timeout == pytest.approx(
        cli.QUICK_TIMEOUT * 5 / 3)
    assert cli.parse_args(["--remote-engines", "--timeout", "60"]).timeout == 60
