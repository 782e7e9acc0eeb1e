"""This host's own IP addresses, for the location hints of a controller that
listens on every address (``--engine-ip 0.0.0.0``) and for error messages.

On Linux the kernel's own tables are read (they are per network namespace,
hold every address of every interface, secondary ones included, and cost no
subprocess): IPv4 from ``/proc/net/fib_trie`` (the ``/32 host LOCAL``
entries), IPv6 from ``/proc/net/if_inet6`` (global addresses that passed
duplicate-address detection; link-local ones need a zone id and are left
out).  Elsewhere, or if those files cannot be read, the addresses the host
name resolves to are used.  Nothing is ever sent anywhere.

:func:`addresses` lists them with the addresses the host name resolves to
first, then the others in the kernel's order, loopback last.
"""
import ipaddress
import socket
import time

#: Seconds a reading of the kernel's tables is reused.
CACHE_SECONDS = 30.0

FIB_TRIE = "/proc/net/fib_trie"
IF_INET6 = "/proc/net/if_inet6"
#: ``if_inet6`` flags of an address not (yet) usable: tentative, DAD failed.
_IFA_F_UNUSABLE = 0x40 | 0x08
#: ``if_inet6`` scopes kept: global (0x00), site (0x40), host/loopback (0x10).
_SCOPES_KEPT = {0x00, 0x40, 0x10}

_cache = {}


def _read(path):
    try:
        with open(path, encoding="ascii", errors="replace") as f:
            return f.read()
    except OSError:
        return None


def ipv4_from_fib_trie(text):
    """The local IPv4 addresses in the text of ``/proc/net/fib_trie``, in order."""
    found = []
    last = None
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith("|--"):
            last = stripped[3:].strip()
        elif last is not None and stripped.startswith("/32 host LOCAL"):
            if last not in found:
                found.append(last)
            last = None
    return found


def ipv6_from_if_inet6(text):
    """The usable IPv6 addresses (global, site and loopback) in the text of
    ``/proc/net/if_inet6``, in order."""
    found = []
    for line in text.splitlines():
        fields = line.split()
        if len(fields) < 6 or len(fields[0]) != 32:
            continue
        try:
            scope, flags = int(fields[3], 16), int(fields[4], 16)
            address = str(ipaddress.IPv6Address(bytes.fromhex(fields[0])))
        except ValueError:
            continue
        if scope in _SCOPES_KEPT and not flags & _IFA_F_UNUSABLE and address not in found:
            found.append(address)
    return found


def _resolved_names():
    """The addresses this host's name resolves to (may be empty, or only 127.0.1.1)."""
    try:
        infos = socket.getaddrinfo(socket.gethostname(), None, proto=socket.IPPROTO_TCP)
    except OSError:
        return []
    found = []
    for family, *_, sockaddr in infos:
        if family in (socket.AF_INET, socket.AF_INET6):
            address = sockaddr[0].split("%", 1)[0]
            if address not in found:
                found.append(address)
    return found


def _kernel_addresses():
    v4, v6 = _read(FIB_TRIE), _read(IF_INET6)
    if v4 is None and v6 is None:
        return None
    return ipv4_from_fib_trie(v4 or "") + ipv6_from_if_inet6(v6 or "")


def is_loopback(address):
    """True for 127.0.0.0/8, ::1 and ``localhost``."""
    if address == "localhost":
        return True
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:
        return False


def _family_of(address):
    return ipaddress.ip_address(address).version


def addresses(version=None, loopback=True):
    """This host's IP addresses (strings): those its host name resolves to
    first, then the rest, loopback ones last (left out with ``loopback=False``).

    ``version`` 4 or 6 keeps one family only.
    """
    now = time.monotonic()
    cached = _cache.get("all")
    if cached is None or now - cached[0] > CACHE_SECONDS:
        named = _resolved_names()
        kernel = _kernel_addresses()
        if kernel is None:   # not Linux: what the name resolves to, and loopback
            kernel = [*named, "127.0.0.1"]
        first = [a for a in named if a in kernel and not is_loopback(a)]
        rest = [a for a in kernel if a not in first and not is_loopback(a)]
        loop = [a for a in kernel if is_loopback(a)] or ["127.0.0.1"]
        cached = _cache["all"] = (now, first + rest + loop)
    found = cached[1]
    if version is not None:
        found = [a for a in found if _family_of(a) == version]
    if not loopback:
        found = [a for a in found if not is_loopback(a)]
    return list(found)


def is_own_address(address):
    """True when ``address`` is one of this host's addresses (loopback included)."""
    try:
        wanted = ipaddress.ip_address(address)
    except ValueError:
        return False
    return wanted.is_loopback or any(ipaddress.ip_address(a) == wanted for a in addresses())


def forget():
    """Read the kernel's tables afresh next time (tests, or after a change)."""
    _cache.clear()
