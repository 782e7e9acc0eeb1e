"""Tier 1 (issue 14): reading this host's addresses from the kernel's tables,
and the location hints made from them."""
import pytest

from ipkernel import fcutil, hostaddrs

FIB_TRIE = """\
Main:
  +-- 0.0.0.0/0 3 0 5
     |-- 0.0.0.0
        /0 universe UNICAST
     +-- 10.213.7.0/24 2 0 2
        |-- 10.213.7.0
           /24 link UNICAST
        |-- 10.213.7.1
           /32 host LOCAL
        |-- 10.213.7.255
           /32 link BROADCAST
     +-- 127.0.0.0/8 2 0 2
        +-- 127.0.0.0/31 1 0 0
           |-- 127.0.0.0
              /8 host LOCAL
           |-- 127.0.0.1
              /32 host LOCAL
     |-- 192.168.5.9
        /32 host LOCAL
Local:
  +-- 0.0.0.0/0 3 0 5
     |-- 10.213.7.1
        /32 host LOCAL
     |-- 127.0.0.1
        /32 host LOCAL
"""

IF_INET6 = """\
fe8000000000000000fc00fffe000001 04 40 20 80     eth0
00000000000000000000000000000001 01 80 10 80       lo
fd000000000000000000000000000002 04 40 00 82     eth0
fd000000000000000000000000000003 04 40 00 c0     eth0
"""


def test_fib_trie_gives_the_local_ipv4_addresses_once_each():
    assert hostaddrs.ipv4_from_fib_trie(FIB_TRIE) == ["10.213.7.1", "127.0.0.1", "192.168.5.9"]


def test_if_inet6_gives_usable_global_and_loopback_addresses():
    # link-local (scope 20) needs a zone id; fd00::3 is tentative (flag 0x40)
    assert hostaddrs.ipv6_from_if_inet6(IF_INET6) == ["::1", "fd00::2"]


@pytest.fixture
def fake_kernel(monkeypatch, tmp_path):
    (tmp_path / "fib_trie").write_text(FIB_TRIE)
    (tmp_path / "if_inet6").write_text(IF_INET6)
    monkeypatch.setattr(hostaddrs, "FIB_TRIE", str(tmp_path / "fib_trie"))
    monkeypatch.setattr(hostaddrs, "IF_INET6", str(tmp_path / "if_inet6"))
    monkeypatch.setattr(hostaddrs, "_resolved_names", lambda: ["127.0.1.1", "192.168.5.9"])
    hostaddrs.forget()
    yield
    hostaddrs.forget()


def test_the_host_names_addresses_come_first_and_loopback_last(fake_kernel):
    assert hostaddrs.addresses() == ["192.168.5.9", "10.213.7.1", "fd00::2", "127.0.0.1", "::1"]
    assert hostaddrs.addresses(4, loopback=False) == ["192.168.5.9", "10.213.7.1"]
    assert hostaddrs.is_own_address("10.213.7.1") and hostaddrs.is_own_address("127.0.0.5")
    assert not hostaddrs.is_own_address("10.213.250.250")


def test_without_the_kernels_tables_the_resolved_names_are_used(monkeypatch, tmp_path):
    monkeypatch.setattr(hostaddrs, "FIB_TRIE", str(tmp_path / "missing"))
    monkeypatch.setattr(hostaddrs, "IF_INET6", str(tmp_path / "missing6"))
    monkeypatch.setattr(hostaddrs, "_resolved_names", lambda: ["192.168.5.9"])
    hostaddrs.forget()
    try:
        assert hostaddrs.addresses() == ["192.168.5.9", "127.0.0.1"]
    finally:
        hostaddrs.forget()


def test_location_hints(fake_kernel):
    assert fcutil.location_hints("0.0.0.0", 7) == [
        "tcp:192.168.5.9:7", "tcp:10.213.7.1:7", "tcp:127.0.0.1:7"]
    assert fcutil.location_hints("::", 7) == [
        "tcp:192.168.5.9:7", "tcp:10.213.7.1:7", "tcp:[fd00::2]:7", "tcp:127.0.0.1:7"]
    assert fcutil.location_hints("10.213.7.1", 7) == ["tcp:10.213.7.1:7"]
    assert fcutil.location_hints("0.0.0.0", 7, location="head.example") == [
        "tcp:head.example:7"]
    assert fcutil.furl_locations("pb://t@tcp:a:1,tcp:[::1]:2/s") == ["a:1", "[::1]:2"]


def test_listen_problems_name_the_cause_and_the_flag(fake_kernel):
    import errno

    absent = fcutil.listen_problem(OSError(errno.EADDRNOTAVAIL, "x"), "10.9.9.9", 0, "engine")
    assert "this host has no address 10.9.9.9" in absent and "10.213.7.1" in absent
    assert "--engine-ip one of them, or 0.0.0.0" in absent
    busy = fcutil.listen_problem(OSError(errno.EADDRINUSE, "x"), "127.0.0.1", 5, "client")
    assert "port 5 on 127.0.0.1 is in use" in busy and "--client-port 0" in busy


def test_an_engine_on_the_controllers_host_dials_loopback_only(fake_kernel):
    from ipkernel.engine.app import controller_hosts
    from ipkernel.engine.pulse import bind_host

    here = "pb://t@tcp:192.168.5.9:7,tcp:10.213.7.1:7,tcp:127.0.0.1:7/s"
    assert controller_hosts(here) == ["127.0.0.1"] and bind_host(controller_hosts(here)) \
        == "127.0.0.1"
    elsewhere = "pb://t@tcp:10.213.9.1:7,tcp:127.0.0.1:7/s"
    assert controller_hosts(elsewhere) == ["10.213.9.1", "127.0.0.1"]
    assert bind_host(controller_hosts(elsewhere)) == "::"
