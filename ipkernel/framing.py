"""Many Serialized values in one bytes object, for bulk messages.

Foolscap spends its time per token, not per byte: a list of a thousand
Serialized copyables costs tens of thousands of tokens, one bytes object
costs one.  :func:`pack` lays a list of Serialized out in one buffer and
:func:`unpack` gives them back, each frame a zero-copy slice of the buffer.
Nothing is pickled or unpickled here, so controllers use it freely.

Layout (little-endian)::

    b"IPK1" count:u32 { td_len:u8 td md_len:u32 md(JSON) nframes:u32 {len:u64 bytes}* }*

:func:`pack_ints` / :func:`unpack_ints` and :func:`pack_floats` /
:func:`unpack_floats` do the same for the numbers that go with such lists.
"""
import json
import struct
import sys
from array import array

from ipkernel.serialize import Serialized

MAGIC = b"IPK1"
_U8 = struct.Struct("<B")
_U32 = struct.Struct("<I")
_U64 = struct.Struct("<Q")
_PICKLE = "pickle"


class FramingError(ValueError):
    """A packed buffer is malformed (truncated, or not made by :func:`pack`)."""


def pack(items):
    """One bytes object holding the Serialized ``items`` (see the module doc)."""
    parts = [MAGIC, _U32.pack(len(items))]
    append = parts.append
    for item in items:
        td = item.type_descriptor.encode()
        md = json.dumps(item.metadata, separators=(",", ":")).encode() if item.metadata else b""
        append(_U8.pack(len(td)))
        append(td)
        append(_U32.pack(len(md)))
        if md:
            append(md)
        append(_U32.pack(len(item.frames)))
        for frame in item.frames:
            append(_U64.pack(memoryview(frame).nbytes))
            append(frame)
    return b"".join(parts)


def unpack(data):
    """The list of Serialized packed in ``data``; FramingError if it is malformed."""
    view = memoryview(data).cast("B")
    end = len(view)
    if view[:4] != MAGIC:
        raise FramingError("not a packed list of values (bad magic)")
    pos = 4

    def take(n):
        nonlocal pos
        if n > end - pos:
            raise FramingError("a packed list of values is truncated")
        chunk = view[pos:pos + n]
        pos += n
        return chunk

    (count,) = _U32.unpack(take(4))
    if count > end:  # each item takes at least one byte: a guard against huge counts
        raise FramingError("a packed list of values claims more items than it can hold")
    items = []
    for _ in range(count):
        (td_len,) = _U8.unpack(take(1))
        td = bytes(take(td_len)).decode()
        (md_len,) = _U32.unpack(take(4))
        md = json.loads(bytes(take(md_len))) if md_len else {}
        (nframes,) = _U32.unpack(take(4))
        if nframes > end - pos:
            raise FramingError("a packed value claims more frames than the buffer can hold")
        frames = []
        for _ in range(nframes):
            (size,) = _U64.unpack(take(8))
            frames.append(take(size))
        items.append(Serialized(frames, td, md))
    if pos != end:
        raise FramingError(f"{end - pos} bytes left over after a packed list of values")
    return items


_BIG_ENDIAN = sys.byteorder == "big"


def _pack_array(typecode, values):
    numbers = array(typecode, values)
    if _BIG_ENDIAN:  # the wire is little-endian
        numbers.byteswap()
    return numbers.tobytes()


def _unpack_array(typecode, data, what):
    numbers = array(typecode)
    if len(data) % numbers.itemsize:
        raise FramingError(f"a packed list of {what} has a partial item")
    numbers.frombytes(data)
    if _BIG_ENDIAN:
        numbers.byteswap()
    return numbers.tolist()


def pack_ints(values):
    """Ints in ``0 <= i < 2**32`` as bytes (OverflowError otherwise)."""
    return _pack_array("I", values)


def unpack_ints(data):
    """The list of ints packed by :func:`pack_ints`."""
    return _unpack_array("I", data, "ints")


def pack_floats(values):
    """Floats as bytes (doubles)."""
    return _pack_array("d", values)


def unpack_floats(data):
    """The list of floats packed by :func:`pack_floats`."""
    return _unpack_array("d", data, "floats")
