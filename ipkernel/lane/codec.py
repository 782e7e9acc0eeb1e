"""The values a lane carries, as JSON text plus raw buffers.

Exact for the vocabulary of ipkernel's RemoteInterfaces: ``None``, bools,
ints, floats, str, bytes, lists, tuples, dicts (any keys of these types),
:class:`~ipkernel.serialize.Serialized` (its frames go as raw buffers,
never copied into the text), :class:`~ipkernel.wire.ErrorRecord` and
:class:`~ipkernel.wire.AsJson` (the receiver gets the plain data, as over
Foolscap).  Nothing is pickled or unpickled: a controller decodes lanes
freely.  Anything else is refused with :class:`CodecError`.

In the text, JSON arrays are lists and JSON objects are one-key tags::

    {"t": [...]}             tuple
    {"d": [k1, v1, ...]}     dict
    {"b": i}                 bytes: buffer i
    {"s": [td, md, i, n]}    Serialized: type, metadata, frames are buffers i..i+n-1
    {"e": {...}}             ErrorRecord state
    {"j": value}             plain JSON data, taken as it is
"""
import json

from ipkernel.serialize import Serialized
from ipkernel.wire import AsJson, ErrorRecord

_encoder = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False)
try:
    # The C encoder, made once (JSONEncoder.encode makes one for every text);
    # no cycle markers: what it is given is a tree, and a cycle in user data
    # ends in RecursionError, refused below like any value it cannot write.
    _c_encode = json.encoder.c_make_encoder(
        None, _encoder.default, json.encoder.encode_basestring, None, ":", ",",
        False, False, True)
except (AttributeError, TypeError):  # a Python without the C accelerator
    _c_encode = None


def _dumps(tree):
    if _c_encode is None:
        return _encoder.encode(tree)
    return "".join(_c_encode(tree, 0))


_decoder = json.JSONDecoder()
_raw_loads = _decoder.raw_decode
_loads = _decoder.decode


def _parse(text):
    # raw_decode skips the two whitespace scans of decode; text with
    # whitespace around it (never written by encode) goes the full way
    try:
        value, end = _raw_loads(text)
    except ValueError:
        return _loads(text)
    return value if end == len(text) else _loads(text)


class CodecError(ValueError):
    """A value cannot travel on a lane, or a lane message is malformed."""


def encode(value):
    """``(text, buffers)``: UTF-8 JSON bytes and the raw buffers it refers to."""
    buffers = []
    tree = _enc(value, buffers)
    try:
        return _dumps(tree).encode(), buffers
    except (TypeError, ValueError, RecursionError) as exc:  # e.g. a set inside AsJson
        raise CodecError(f"a value cannot be sent on a lane: {exc}") from None


def _enc(v, buffers):
    t = type(v)
    if t is str or t is int or t is bool or t is float or v is None:
        return v
    if t is list:
        return [_enc(x, buffers) for x in v]
    if t is tuple:
        return {"t": [_enc(x, buffers) for x in v]}
    if t is dict:
        flat = []
        for k, x in v.items():
            flat.append(_enc(k, buffers))
            flat.append(_enc(x, buffers))
        return {"d": flat}
    if t is Serialized:
        first = len(buffers)
        buffers.extend(v.frames)
        return {"s": [v.type_descriptor, v.metadata, first, len(v.frames)]}
    if t is bytes or t is bytearray or t is memoryview:
        buffers.append(v)
        return {"b": len(buffers) - 1}
    if t is AsJson:
        return {"j": v.value}
    if t is ErrorRecord:
        return {"e": _enc(v.state(), buffers)}
    raise CodecError(f"a {t.__name__} cannot be sent on a lane")


def decode(text, buffers):
    """The value :func:`encode` made; CodecError if ``text`` is malformed."""
    try:
        return _dec(_parse(text if isinstance(text, str) else bytes(text).decode()), buffers)
    except CodecError:
        raise
    except (ValueError, TypeError, IndexError, KeyError, RecursionError) as exc:
        raise CodecError(f"a lane message is malformed: {exc}") from None


def _flat(items):
    """True when none of ``items`` is a list or a tagged value (so they decode
    as they are: calls and answers are mostly such short lists)."""
    for x in items:
        t = type(x)
        if t is list or t is dict:
            return False
    return True


def _dec(v, buffers):
    t = type(v)
    if t is list:
        return v if _flat(v) else [_dec(x, buffers) for x in v]
    if t is not dict:
        return v
    if len(v) != 1:
        raise CodecError("a lane message holds an unknown tag")
    (tag, body), = v.items()
    if tag == "t":
        if type(body) is not list:
            raise CodecError("a lane message holds a malformed tuple")
        return tuple(body) if _flat(body) else tuple(_dec(x, buffers) for x in body)
    if tag == "d":
        if type(body) is not list or len(body) % 2:
            raise CodecError("a lane message holds a malformed dict")
        if not body:
            return {}
        it = iter(body)
        return {_key(_dec(k, buffers)): _dec(x, buffers) for k, x in zip(it, it)}
    if tag == "b":
        return bytes(buffers[_index(body, buffers)])
    if tag == "s":
        td, md, first, n = body
        if type(td) is not str or type(md) is not dict or type(n) is not int or n < 0:
            raise CodecError("a lane message holds a malformed Serialized")
        if type(first) is not int or first < 0 or first + n > len(buffers):
            raise CodecError("a lane message refers to a missing buffer")
        return Serialized(list(buffers[first:first + n]), td, md)
    if tag == "j":
        return body
    if tag == "e":
        state = _dec(body, buffers)
        if type(state) is not dict or not all(type(k) is str for k in state):
            raise CodecError("a lane message holds a malformed error record")
        try:
            return ErrorRecord(**state)
        except TypeError as exc:
            raise CodecError(f"a lane message holds a malformed error record: {exc}") from None
    raise CodecError(f"a lane message holds an unknown tag {tag!r:.20}")


def _key(k):
    try:
        hash(k)
    except TypeError:
        raise CodecError("a lane message holds a dict with an unhashable key") from None
    return k


def _index(i, buffers):
    if type(i) is not int or not 0 <= i < len(buffers):
        raise CodecError("a lane message refers to a missing buffer")
    return i
