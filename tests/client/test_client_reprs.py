"""Tier 1: the blocking clients' repr and str (what IPython's ``mec?`` shows as its
"String form") show the controller's FURL without its secret part (issue 12)."""
from ipkernel.client import TaskClient

FURL = "pb://o33gyjsq2t43pdktaab7s2sqix2txtnv@tcp:127.0.0.1:41234/em6n6kvvcu6ilpjboulqnoln2daxszga"
SHOWN = "pb://o33gyjsq...@tcp:127.0.0.1:41234/..."
SWISS = FURL.rsplit("/", 1)[1]


def test_multiengine_client_repr_and_str_hide_the_swissnum(fake):
    _, mec = fake
    mec.furl = FURL
    for shown in (repr(mec), str(mec), f"{mec}"):
        assert SWISS not in shown
        assert shown.startswith(f"<MultiEngineClient {SHOWN} ")
    assert mec.furl == FURL   # the attribute still holds the FURL to connect with
    mec.close()
    assert SWISS not in repr(mec) and "closed" in repr(mec)


def test_task_client_repr_and_str_hide_the_swissnum():
    tc = TaskClient.__new__(TaskClient)   # the repr needs no connection
    tc.furl, tc._closed = FURL, False
    for shown in (repr(tc), str(tc)):
        assert shown == f"<TaskClient {SHOWN}>"
    tc._closed = True
    assert repr(tc) == f"<TaskClient {SHOWN} closed>"
    tc.furl = None
    assert repr(tc) == "<TaskClient ? closed>"
