"""A client that stops in the middle of a bulk push to every engine.

Run by tests/apps/test_data_port_abuse.py (this file is not a test module):
``python data_push_session.py FURL_FILE MEGABYTES``.  It connects a
blocking client, sends on its data channel the header of a PUT of
MEGABYTES to all engines and half of its body, prints ``HALF SENT`` and
waits for the test to kill or stop it (it exits by itself after 120 s).
The other half never comes: that is the fault under test.
"""
import sys
import threading

from ipkernel.client import MultiEngineClient
from ipkernel.datachannel import frames
from ipkernel.datachannel.peer import new_blob_id


def main(furl_file, megabytes):
    mec = MultiEngineClient(furl_file, timeout=30)
    peer = mec._holder[0].data
    assert peer is not None and peer.connected, "the client did not join the data channel"
    size = megabytes << 20
    head = frames.header(frames.PUT, new_blob_id(), size, {"to": "all"})
    with peer.send_lock:
        frames.send_all(peer.sock, [head, bytes(size // 2)])
    print("HALF SENT", flush=True)
    threading.Event().wait(120)


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]))
