"""Tier 4 (issue 17): the dashboard beyond loopback is HTTPS with the
controller's certificate, seen from another host.

The controller runs in namespace *a* with ``--dashboard-ip`` set to *a*'s
address; an engine and a small HTTP client (the standard library's) run in
namespace *b*.  The client checks that the URL file names ``https://`` and
*a*'s address; that the server's certificate is the controller's (the one the
client FURL names, and the fingerprint the controller logged); that without
the token it gets 403 and no engine data, with it the engine in *b*; that the
page's cookie is Secure and HttpOnly; and that plain HTTP on that port gets
no page.
"""
import re
import sys
import textwrap

import pytest

from network.test_between_hosts import (child_env, furl_parts, hosts, procs,  # noqa: F401
                                        result_of, start_controller, start_engine)

pytestmark = [pytest.mark.tier4, pytest.mark.timeout(240)]

#: In namespace b: fetch the dashboard at the URL in argv[1]; prints one JSON line.
HTTPS_CLIENT = textwrap.dedent("""
    import hashlib, json, socket, ssl, sys, urllib.error, urllib.request
    url = sys.argv[1]
    base, token = url.split("?token=")
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE   # compared below instead
    out = {}
    def fetch(path, headers=()):
        request = urllib.request.Request(base + path, headers=dict(headers))
        try:
            with urllib.request.urlopen(request, context=ctx, timeout=20) as response:
                return response.status, dict(response.headers), response.read().decode()
        except urllib.error.HTTPError as e:
            return e.code, dict(e.headers), e.read().decode()
    out["no_token"] = fetch("api/engines")
    out["wrong_token"] = fetch("api/engines", {"Authorization": "token " + "x" * len(token)})
    out["engines"] = fetch("api/engines", {"Authorization": "token " + token})
    out["page"] = fetch("?token=" + token)
    host, port = base.split("//")[1].rstrip("/").rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=20) as raw:
        with ctx.wrap_socket(raw) as tls:
            out["cert_der"] = tls.getpeercert(binary_form=True).hex()
            out["tls_version"] = tls.version()
    # plain HTTP on the TLS port: no page, no data
    with socket.create_connection((host, int(port)), timeout=20) as plain:
        plain.settimeout(10)
        plain.sendall(b"GET /api/engines?token=" + token.encode() + b" HTTP/1.0\\r\\n\\r\\n")
        got = b""
        try:
            while True:
                chunk = plain.recv(65536)
                if not chunk:
                    break
                got += chunk
        except (OSError, socket.timeout):
            pass
    out["plain"] = got.decode("latin-1")
    print("RESULT " + json.dumps(out), flush=True)
""")


def test_the_dashboard_beyond_loopback_is_https_with_the_controllers_certificate(
        hosts, procs, tmp_path):
    import hashlib
    import json

    from ipkernel.transport.tls import tubid_of_der

    (name_a, addr_a), (name_b, addr_b) = hosts
    env = child_env()
    controller, cluster = start_controller(procs, name_a, tmp_path, "--dashboard-ip", addr_a)
    security = cluster / "security"
    url = (security / "ipcontroller-dashboard.url").read_text().strip()
    match = re.fullmatch(rf"https://{re.escape(addr_a)}:(\d+)/\?token=([\w-]{{40,}})", url)
    assert match, url
    token = match.group(2)
    logged = re.search(r"dashboard: (\S+) \(TLS, certificate SHA-256 ([0-9A-F:]{95})",
                       controller.output)
    assert logged and logged.group(1) == url, controller.output

    engine = start_engine(procs, name_b, tmp_path, security)
    assert "registered as engine 0" in engine.output, engine.output

    client = procs(name_b, [sys.executable, "-c", HTTPS_CLIENT, url], tmp_path / "https.log",
                   env)
    got = result_of(client, 90)

    # The certificate is the controller's: the one the client FURL names, and the
    # fingerprint it logged (what a user compares with the browser's).
    der = bytes.fromhex(got["cert_der"])
    assert tubid_of_der(der) == furl_parts(security / "ipcontroller-mec.furl")[0]
    digest = hashlib.sha256(der).hexdigest().upper()
    assert logged.group(2) == ":".join(digest[i:i + 2] for i in range(0, 64, 2))
    assert got["tls_version"] in ("TLSv1.2", "TLSv1.3")

    for refused in ("no_token", "wrong_token"):
        code, _, body = got[refused]
        assert code == 403 and "token" in body and addr_b not in body, got[refused]
    code, _, body = got["engines"]
    assert code == 200, got["engines"]
    assert [(e["id"], e["host"], e["state"]) for e in json.loads(body)] == [(0, addr_b, "idle")]

    code, headers, body = got["page"]
    assert code == 200 and "<html" in body.lower()
    cookie = next(v for k, v in headers.items() if k.lower() == "set-cookie")
    assert token in cookie
    assert all(flag in cookie for flag in ("Secure", "HttpOnly", "SameSite=strict")), cookie

    # Plain HTTP on the TLS port gets no page and no data.
    assert "200 OK" not in got["plain"] and token not in got["plain"], got["plain"]
    assert addr_b not in got["plain"]
