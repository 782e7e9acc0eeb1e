"""Tier 1: reading a blob from a process's memory (ipkernel.datachannel.memread)."""
import errno
import os

import pytest

from ipkernel.datachannel import memread

pytestmark = [pytest.mark.tier1,
              pytest.mark.skipif(not memread.available(), reason="Linux and CPython only")]


def request(views, proof_buf, pid=None):
    return {"pid": pid or os.getpid(), "proof": memread.addresses([proof_buf])[0][0],
            "at": memread.addresses(views)}


def test_a_blob_is_read_in_pieces_across_its_buffers():
    parts = [bytes(range(256)) * 41, bytearray(b"middle" * 999), memoryview(b"end" * 7001)]
    proof = memread.fresh_proof()
    held = bytearray(proof)
    whole = b"".join(bytes(p) for p in parts)
    source = memread.MemorySource(request([memoryview(p).cast("B") for p in parts], held),
                                  proof, len(whole))
    out = bytearray(len(whole))
    view = memoryview(out)
    for start in range(0, len(whole), 5000):   # pieces that straddle buffers
        source.read_into(view[start:start + 5000])
    assert bytes(out) == whole


def test_a_process_without_the_proof_at_that_address_is_not_read():
    proof = memread.fresh_proof()
    held = bytearray(proof)
    held[5] ^= 0xFF
    data = b"secret" * 1000
    with pytest.raises(OSError) as info:
        memread.MemorySource(request([memoryview(data)], held), proof, len(data))
    assert info.value.errno == errno.EPERM and "proof" in str(info.value)


def test_a_request_that_does_not_add_up_or_is_malformed_is_refused():
    proof = memread.fresh_proof()
    held = bytearray(proof)
    data = b"abc" * 100
    good = request([memoryview(data)], held)
    with pytest.raises(ValueError, match="add up"):
        memread.MemorySource(good, proof, len(data) + 1)
    for bad in ({**good, "pid": -1}, {**good, "pid": True}, {**good, "at": [[1, 2, 3]]},
                {**good, "at": "x"}, {**good, "proof": "0x10"}, ["not", "a", "dict"]):
        with pytest.raises(ValueError):
            memread.MemorySource(bad, proof, len(data))


def test_memory_that_is_not_mapped_fails_with_the_errno():
    proof = memread.fresh_proof()
    held = bytearray(proof)
    req = request([memoryview(held)], held)
    req["at"] = [[8, 4096]]   # the first page is never mapped
    source = memread.MemorySource(req, proof, 4096)
    with pytest.raises(OSError) as info:
        source.read_into(memoryview(bytearray(4096)))
    assert info.value.errno == errno.EFAULT
