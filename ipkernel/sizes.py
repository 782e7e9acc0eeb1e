"""Byte sizes: a cheap estimate of what a kept result costs, and ``64M``-style
sizes for command-line options.

:func:`estimate` is what the controller's byte budgets count (the execute
history of each engine, the unfetched results of each client).  It walks
plain containers and counts the payload of strings, bytes and serialized
values, plus a small fixed cost per object; it never unpickles anything
and never copies.  A serialized value whose data waits on the data channel
(a reference) counts with the size of that data.
"""
import re
import sys

from twisted.python.failure import Failure

#: What one container, number or other small object is taken to cost.
OBJECT_COST = 64
#: Containers nested deeper than this count as OBJECT_COST (a guard, not a limit).
MAX_DEPTH = 32

_UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}
_SIZE = re.compile(r"^\s*(\d+)\s*([kmgt]?)(?:i?b)?\s*$", re.IGNORECASE)


def estimate(value, _depth=0):
    """An honest, cheap estimate of the bytes ``value`` holds (see the module doc)."""
    kind = type(value)
    if kind is str:
        return sys.getsizeof(value)  # O(1): header plus 1, 2 or 4 bytes a character
    if kind in (bytes, bytearray):
        return OBJECT_COST + len(value)
    if _depth > MAX_DEPTH:
        return OBJECT_COST
    if kind is dict:
        return OBJECT_COST + _items(value.keys(), _depth) + _items(value.values(), _depth)
    if kind in (list, tuple):
        return OBJECT_COST + _items(value, _depth)
    if isinstance(value, Failure):
        return OBJECT_COST + estimate(value.value, _depth + 1)
    record = getattr(value, "record", None)  # ipkernel.wire.WireError
    if record is not None:
        return OBJECT_COST + estimate(record, _depth + 1)
    if hasattr(value, "frames") and hasattr(value, "metadata"):  # ipkernel.serialize.Serialized
        from ipkernel.datachannel import refs
        return OBJECT_COST + refs.nbytes(value) + estimate(value.metadata, _depth + 1)
    slots = getattr(type(value), "__slots__", None)
    if slots and not isinstance(value, BaseException):  # ipkernel.wire.ErrorRecord and kin
        return OBJECT_COST + sum(estimate(getattr(value, name, None), _depth + 1)
                                 for name in slots)
    if isinstance(value, BaseException):
        return OBJECT_COST + sum(estimate(a, _depth + 1) for a in value.args)
    return OBJECT_COST


def _items(values, depth, _getsizeof=sys.getsizeof):
    # The common leaves (str, int, None) are counted here rather than by a
    # call each: the controller estimates every execute result it keeps.
    total = 0
    for v in values:
        kind = type(v)
        if kind is str:
            total += _getsizeof(v)
        elif kind is int or kind is float or kind is bool or v is None:
            total += OBJECT_COST
        else:
            total += estimate(v, depth + 1)
    return total


def parse_size(text):
    """Bytes from ``text``: ``1000``, ``64K``, ``64M``, ``8MiB``, ``1G``, ``1GB``
    (binary units: K is 1024).  Raises ValueError naming the text otherwise."""
    match = _SIZE.match(str(text))
    if match is None:
        raise ValueError(f"{text!r} is not a size: give bytes, optionally with K, M, G or T "
                         f"(binary: 64M is 64 MiB)")
    return int(match.group(1)) * _UNITS[match.group(2).lower()]


def format_size(n):
    """``n`` bytes for people: ``64 MiB``, ``1.5 GiB``, ``512 bytes``."""
    for unit, scale in (("TiB", 1 << 40), ("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= scale:
            text = f"{n / scale:.1f}".rstrip("0").rstrip(".")
            return f"{text} {unit}"
    return f"{n} bytes"


def option_size(text):
    """An argparse ``type`` for a size option: :func:`parse_size`, at least 1 byte."""
    import argparse

    try:
        n = parse_size(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    if n < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: a budget must be at least 1 byte")
    return n
