"""One-time engine registration credentials (issue 13).

A controller started with a key in its environment (:data:`KEY_ENV`, as
:class:`~ipkernel.cluster.LocalCluster` and ``ipcluster`` start it)
offers a second engine-facing object, the *gate* (its FURL in
``security/ipcontroller-engine-gate.furl``).  The gate registers an engine
only with a credential made from that key:

* a *launch credential* (:func:`mint`), made by whoever holds the key (the
  process that launched the controller) for each engine it starts, valid
  for one registration and for :data:`CREDENTIAL_TTL` seconds;
* a *rejoin credential* (:func:`rejoin_credential`), which the gate hands
  to an engine it registered (over the engine's TLS connection; the engine
  keeps it in memory only): it lets that engine register again under its
  id after a lost connection or a controller restart with ``-r``.

The gate FURL alone grants nothing, so its file may exist.  Credentials
are HMACs: the controller keeps no list of them, only the launch
credentials already used (until they expire).
"""
import hashlib
import hmac
import os
import secrets
import time

#: The environment variable that gives the controller its key (hex).
KEY_ENV = "IPKERNEL_ENGINE_KEY"
#: The environment variable that gives an engine its credential.
CREDENTIAL_ENV = "IPKERNEL_ENGINE_CREDENTIAL"
#: The gate's FURL file (in the cluster directory's ``security/``).
GATE_FURL = "ipcontroller-engine-gate.furl"
#: Seconds a launch credential is valid for if unused.
CREDENTIAL_TTL = 600.0
#: Seconds a credential may seem to come from the future (clocks of one machine).
CLOCK_SLACK = 60.0


class CredentialRefused(Exception):
    """An engine's registration credential is not valid (the message says why)."""


def new_key():
    """A fresh random key (bytes) for :func:`mint` and :class:`CredentialChecker`."""
    return secrets.token_bytes(32)


def key_from_env(environ=None):
    """The key in ``environ`` (default ``os.environ``), removed from it; None if absent.

    Removed so that nothing the process starts (or runs) sees it."""
    environ = os.environ if environ is None else environ
    text = environ.pop(KEY_ENV, None)
    if not text:
        return None
    try:
        return bytes.fromhex(text)
    except ValueError:
        raise ValueError(f"{KEY_ENV} must be a hex key (it is set by LocalCluster and "
                         f"ipcluster); unset it to start a controller by hand") from None


def _mac(key, text):
    return hmac.new(key, text.encode("ascii"), hashlib.sha256).hexdigest()


def mint(key, now=None):
    """A launch credential for one engine: ``"l1.ISSUED.NONCE.MAC"``."""
    issued = int(time.time() if now is None else now)
    body = f"l1.{issued}.{secrets.token_hex(12)}"
    return f"{body}.{_mac(key, body)}"


def rejoin_credential(key, engine_id):
    """The credential with which engine ``engine_id`` registers again: ``"r1.ID.MAC"``."""
    body = f"r1.{int(engine_id)}"
    return f"{body}.{_mac(key, body)}"


class CredentialChecker:
    """Checks credentials made with ``key``; remembers used launch credentials.

    ``ttl`` is the life of an unused launch credential; ``clock`` returns the
    time (default ``time.time``).
    """

    def __init__(self, key, ttl=CREDENTIAL_TTL, clock=time.time):
        self.key = key
        self.ttl = ttl
        self.clock = clock
        #: nonce -> issue time of the launch credentials already used
        self._used = {}

    def check(self, credential):
        """The engine id a valid credential binds (None for a launch credential).

        Raises CredentialRefused if it is not valid; a launch credential is
        used up by a successful check."""
        parts = credential.split(".") if isinstance(credential, str) else []
        if len(parts) < 2 or not hmac.compare_digest(
                _mac(self.key, ".".join(parts[:-1])), parts[-1]):
            raise CredentialRefused(
                "the engine credential was not made for this controller (an engine started by "
                "LocalCluster or ipcluster gets one; start other engines with the engine FURL "
                "file: ipcluster --engine-furl, LocalCluster(engine_furl_file=True))")
        if parts[0] == "r1" and len(parts) == 3:
            return int(parts[1])
        if parts[0] != "l1" or len(parts) != 4:
            raise CredentialRefused("the engine credential has an unknown form")
        issued, nonce = int(parts[1]), parts[2]
        now = self.clock()
        self._forget_expired(now)
        if nonce in self._used:
            raise CredentialRefused(
                "this engine credential was already used: each one registers one engine once "
                "(its launcher gives a new engine a new one)")
        if now - issued > self.ttl:
            raise CredentialRefused(
                f"this engine credential expired: it is valid for {self.ttl:g} s after it was "
                f"made, and was made {now - issued:.0f} s ago; start the engine again")
        if issued - now > CLOCK_SLACK:
            raise CredentialRefused("this engine credential was made in the future")
        self._used[nonce] = issued
        return None

    def _forget_expired(self, now):
        # a used credential past its life is refused as expired anyway
        for nonce in [n for n, issued in self._used.items() if now - issued > self.ttl]:
            del self._used[nonce]
