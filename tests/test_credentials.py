"""Tier 1: one-time engine credentials (issue 13): minting, single use, expiry,
rejoin credentials, the key in the environment."""
import pytest

from ipkernel import credentials
from ipkernel.credentials import CredentialChecker, CredentialRefused

pytestmark = pytest.mark.tier1

KEY = b"k" * 32


class Clock:
    def __init__(self, now=1_000_000.0):
        self.now = now

    def __call__(self):
        return self.now


def test_a_launch_credential_registers_once():
    clock = Clock()
    checker = CredentialChecker(KEY, clock=clock)
    credential = credentials.mint(KEY, now=clock.now)
    assert checker.check(credential) is None
    with pytest.raises(CredentialRefused, match="already used"):
        checker.check(credential)
    # another one from the same key is still good
    assert checker.check(credentials.mint(KEY, now=clock.now)) is None


def test_a_launch_credential_expires_unused():
    clock = Clock()
    checker = CredentialChecker(KEY, ttl=600, clock=clock)
    credential = credentials.mint(KEY, now=clock.now)
    clock.now += 601
    with pytest.raises(CredentialRefused, match="expired.*600 s"):
        checker.check(credential)
    fresh = credentials.mint(KEY, now=clock.now - 599)
    assert checker.check(fresh) is None


def test_used_credentials_are_forgotten_once_expired():
    clock = Clock()
    checker = CredentialChecker(KEY, ttl=10, clock=clock)
    for _ in range(5):
        checker.check(credentials.mint(KEY, now=clock.now))
    assert len(checker._used) == 5
    clock.now += 11
    checker.check(credentials.mint(KEY, now=clock.now))
    assert len(checker._used) == 1


def test_a_credential_of_another_key_or_altered_is_refused():
    checker = CredentialChecker(KEY)
    with pytest.raises(CredentialRefused, match="not made for this controller"):
        checker.check(credentials.mint(b"x" * 32))
    good = credentials.mint(KEY)
    issued = int(good.split(".")[1])
    forged = good.replace(f".{issued}.", f".{issued + 3600}.")
    with pytest.raises(CredentialRefused, match="not made for this controller"):
        checker.check(forged)
    for junk in ("", "nonsense", "l1.1.2", None, 7):
        with pytest.raises(CredentialRefused):
            checker.check(junk)


def test_a_credential_from_the_future_is_refused():
    clock = Clock()
    checker = CredentialChecker(KEY, clock=clock)
    with pytest.raises(CredentialRefused, match="future"):
        checker.check(credentials.mint(KEY, now=clock.now + 3600))


def test_a_rejoin_credential_names_its_engine_and_lasts():
    clock = Clock()
    checker = CredentialChecker(KEY, ttl=10, clock=clock)
    rejoin = credentials.rejoin_credential(KEY, 7)
    assert checker.check(rejoin) == 7
    clock.now += 1e6
    assert checker.check(rejoin) == 7      # again, and long after
    with pytest.raises(CredentialRefused):
        checker.check(rejoin.replace("r1.7.", "r1.8."))


def test_the_key_is_taken_out_of_the_environment():
    environ = {credentials.KEY_ENV: KEY.hex(), "OTHER": "1"}
    assert credentials.key_from_env(environ) == KEY
    assert environ == {"OTHER": "1"}
    assert credentials.key_from_env(environ) is None
    with pytest.raises(ValueError, match=credentials.KEY_ENV):
        credentials.key_from_env({credentials.KEY_ENV: "not hex"})


def test_keys_are_random():
    assert credentials.new_key() != credentials.new_key()
    assert len(credentials.new_key()) == 32
