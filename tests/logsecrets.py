"""Looking for secrets in logs and reprs: the tier-3 checks of issue 12.

A FURL (``pb://TUBID@HINTS/SWISSNUM``) is a capability: its swissnum must
never be shown, nor the one-time tokens that join a lane or the data
channel.  What may be shown is a FURL redacted by
:func:`ipkernel.fcutil.redacted_furl` (``pb://abcdefgh...@HINTS/...``).

* :func:`furl_secrets`: the swissnums of a cluster directory's FURL files.
* :func:`token_secrets`: the forms a token could be written in.
* :func:`cluster_texts`: the log files of a cluster directory.
* :func:`leaks`: which secrets (and which unredacted FURLs) appear in which
  texts; :func:`assert_no_leaks` fails a test that found some, naming
  where without repeating the secret.

Importable from any test module (``tests/`` is on ``pythonpath``).
"""
import base64
import re
from pathlib import Path

#: A FURL whose name part is shown (anything but the redaction mark).
UNREDACTED_FURL = re.compile(
    r"pb://[^@/\s'\"<>]*@[^/\s'\"<>]*/(?!\.\.\.)[^\s'\"<>()\[\]{},;\\]{8,}")


def furl_secrets(cluster_dir):
    """``{swissnum: label}`` of the FURL files in ``cluster_dir``/security."""
    secrets = {}
    for path in sorted(Path(cluster_dir, "security").glob("*.furl")):
        try:
            furl = path.read_text().strip()
        except OSError:
            continue
        if furl.startswith("pb://") and "/" in furl[5:]:
            name = furl.rsplit("/", 1)[1]
            if len(name) >= 8:
                secrets[name] = f"the swissnum of {path.name}"
    return secrets


def token_secrets(tokens, label="a lane or data-channel token"):
    """``{form: label}``: each token (bytes, or hex text) as hex, base64,
    base32 and the inside of its bytes repr."""
    secrets = {}
    for token in tokens:
        raw = bytes.fromhex(token) if isinstance(token, str) else bytes(token)
        for form in (raw.hex(), base64.b64encode(raw).decode(),
                     base64.b32encode(raw).decode().rstrip("="), repr(raw)[2:-1]):
            secrets[form] = label
            secrets.setdefault(form.lower(), label)
    return secrets


def cluster_texts(cluster_dir):
    """``{file name: text}`` of every log file of ``cluster_dir``."""
    texts = {}
    for path in sorted(Path(cluster_dir, "log").glob("*")):
        if path.is_file():
            texts[str(path)] = path.read_text(encoding="utf-8", errors="replace")
    return texts


def leaks(texts, secrets):
    """``[(where, what)]``: the secrets found in ``texts`` (``{where: text}``),
    and every FURL shown with its name part."""
    found = []
    for where, text in texts.items():
        for secret, label in secrets.items():
            if secret and secret in text:
                found.append((where, label))
        for match in UNREDACTED_FURL.finditer(text):
            found.append((where, f"an unredacted FURL ({match.group(0)[:20]}...)"))
    return sorted(set(found))


def assert_no_leaks(texts, secrets, context=""):
    """Fail if :func:`leaks` finds anything (the message names where, not the secret)."""
    found = leaks(texts, secrets)
    assert not found, (f"secrets shown{' ' + context if context else ''}:\n"
                       + "\n".join(f"  {what} in {where}" for where, what in found))


def check_cluster_dir(cluster_dir, extra_texts=None, tokens=()):
    """:func:`assert_no_leaks` for the logs of ``cluster_dir`` (and
    ``extra_texts``) against its FURL files' swissnums and ``tokens``."""
    texts = cluster_texts(cluster_dir)
    texts.update(extra_texts or {})
    secrets = furl_secrets(cluster_dir)
    secrets.update(token_secrets(tokens))
    assert_no_leaks(texts, secrets, f"in the logs of {cluster_dir}")


def client_tokens(clients):
    """The lane and data-channel tokens of async multi-engine ``clients``
    (of this process)."""
    tokens = []
    for client in clients:
        lane = getattr(getattr(client, "remote", None), "lane", None)
        for holder in (getattr(client, "data", None), lane):
            token = getattr(holder, "token", None)
            if isinstance(token, bytes):
                tokens.append(token)
    return tokens


def tokens_in_this_process():
    """The tokens of every data-channel peer and lane alive in this process
    (hex); run on an engine with ``apply`` to learn the engine's."""
    import gc

    from ipkernel.datachannel.peer import DataChannelPeer
    from ipkernel.lane.protocol import LaneProtocol

    return sorted({obj.token.hex() for obj in gc.get_objects()
                   if isinstance(obj, (DataChannelPeer, LaneProtocol))
                   and isinstance(getattr(obj, "token", None), bytes)})
