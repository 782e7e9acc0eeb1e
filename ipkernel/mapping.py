"""Splitting a sequence across engines and joining the pieces back.

Two distributions are known:

``'b'`` (blocks)
    part ``p`` of ``q`` is one contiguous slice; the first ``len(seq) % q``
    parts get one item more than the others (10 items over 4 parts: 3, 3,
    2, 2).
``'r'`` (round robin)
    part ``p`` of ``q`` is ``seq[p::q]``.

Parts are slices of the original sequence, so numpy arrays are split into
views, without copies.  numpy is optional: it is only used when the parts
already are numpy arrays.
"""
import operator
import sys
from collections.abc import Mapping, Sequence

__all__ = ["DISTRIBUTIONS", "check_dist", "partition", "partitions", "join", "as_sequences"]

DISTRIBUTIONS = ("b", "r")


def as_sequences(sequences, what="map"):
    """The sequences a map goes over, each sized and sliceable (an iterator or
    other iterable made a list); TypeError naming the one that is not
    iterable at all (``map(f, 5)`` instead of ``map(f, [5])``)."""
    out = []
    for k, seq in enumerate(sequences, 1):
        if hasattr(seq, "__len__") and hasattr(seq, "__getitem__"):
            out.append(seq)
            continue
        try:
            out.append(list(seq))
        except TypeError:
            if hasattr(seq, "__iter__"):
                raise   # an iterable that failed while iterating: its own error
            raise TypeError(f"{what}: sequence {k} ({type(seq).__name__}) cannot "
                            f"be iterated: {what}(func, seq1, seq2, ...) takes one sequence "
                            f"(list, tuple, range, array, iterator) per argument of func; "
                            f"for a single value x write [x]") from None
    return out


def check_dist(dist):
    """Return ``dist`` if it names a distribution, else raise ValueError saying which exist."""
    if not isinstance(dist, str) or dist not in DISTRIBUTIONS:
        raise ValueError(f"unknown distribution {dist!r}: use 'b' (blocks) or 'r' (round robin)")
    return dist


def _numpy_array_type():
    numpy = sys.modules.get("numpy")  # no numpy imported: no numpy arrays exist
    return numpy.ndarray if numpy is not None else ()


def _count(value, name):
    if isinstance(value, bool):
        raise ValueError(f"{name} must be an int, not {value!r}")
    try:
        return operator.index(value)
    except TypeError:
        raise ValueError(f"{name} must be an int, not {value!r}") from None


def partition(seq, p, q, dist="b"):
    """Return part ``p`` (0 <= p < q) of ``seq`` split into ``q`` parts.

    ``seq`` is anything with ``len()`` and slicing: list, tuple, range, str,
    bytes, numpy array (the part is a view).  The part has the type slicing
    gives.  ValueError for an unknown ``dist`` or a bad ``p``/``q``;
    TypeError if ``seq`` cannot be sliced.
    """
    check_dist(dist)
    q = _count(q, "q (the number of parts)")
    p = _count(p, "p (the part number)")
    if q < 1:
        raise ValueError(f"q (the number of parts) must be at least 1, not {q}")
    if not 0 <= p < q:
        raise ValueError(f"p (the part number) must be in range(0, {q}), not {p}")
    if isinstance(seq, Mapping) or not (hasattr(seq, "__len__") and hasattr(seq, "__getitem__")):
        raise TypeError(f"cannot partition a {type(seq).__name__}: "
                        "it needs a sequence supporting len() and slicing")
    if dist == "r":
        return seq[p::q]
    size, extra = divmod(len(seq), q)
    start = p * size + min(p, extra)
    return seq[start:start + size + (p < extra)]


class PrePartitioned:
    """Parts already split by the sender (a client that serialized each part:
    the controller cannot look inside them).  :func:`partitions` hands them
    back as they are."""

    __slots__ = ("parts",)

    def __init__(self, parts):
        self.parts = list(parts)

    def __len__(self):
        return len(self.parts)


def partitions(seq, q, dist="b"):
    """Return the list of the ``q`` parts of ``seq`` (see :func:`partition`)."""
    if isinstance(seq, PrePartitioned):
        if len(seq.parts) != q:
            raise ValueError(f"the data was split into {len(seq.parts)} parts but the call "
                             f"reaches {q} engines (engines came or went); try again")
        return list(seq.parts)
    check_dist(dist)
    q = _count(q, "q (the number of parts)")
    if q < 1:
        raise ValueError(f"q (the number of parts) must be at least 1, not {q}")
    return [partition(seq, p, q, dist) for p in range(q)]


def _items(part):
    """The items of a part, for a list result.  A part that is not a sequence
    (or is a str or bytes among other parts) counts as one item: that is how
    a one-item part pushed flattened comes back."""
    if isinstance(part, Sequence) and not isinstance(part, (str, bytes, bytearray)):
        return list(part)
    return [part]


def _interleave(parts, target):
    """Write round-robin ``parts`` into ``target`` (a mutable sequence of the
    full length) at their original positions."""
    q, total = len(parts), len(target)
    for p, part in enumerate(parts):
        expected = len(range(p, total, q))
        if len(part) != expected:
            raise ValueError(
                f"these parts do not come from a round-robin split: part {p} of {q} "
                f"has {len(part)} items, {expected} expected for {total} items in all")
        target[p::q] = part
    return target


def join(parts, dist="b"):
    """Join the parts made by :func:`partition` back into one sequence.

    numpy arrays are joined with ``numpy.concatenate`` (into a new array),
    str parts into a str, bytes parts into bytes, anything else into one
    flat list (tuples and ranges too); a part that is not a sequence counts
    as one item.  With ``dist='r'`` the original order is restored.
    ValueError for an unknown ``dist`` or round-robin parts of impossible
    lengths.
    """
    check_dist(dist)
    parts = list(parts)
    ndarray = _numpy_array_type()
    if ndarray and any(isinstance(part, ndarray) for part in parts):
        numpy = sys.modules["numpy"]
        arrays = [numpy.atleast_1d(numpy.asarray(part)) for part in parts]
        if dist == "b":
            return numpy.concatenate(arrays)
        total = sum(len(a) for a in arrays)
        # concatenating empty slices checks the shapes and finds the common dtype
        like = numpy.concatenate([a[:0] for a in arrays])
        target = numpy.empty((total,) + like.shape[1:], dtype=like.dtype)
        return _interleave(arrays, target)
    if parts and all(isinstance(part, str) for part in parts):
        if dist == "b":
            return "".join(parts)
        return "".join(_interleave(parts, [""] * sum(map(len, parts))))
    if parts and all(isinstance(part, (bytes, bytearray)) for part in parts):
        if dist == "b":
            return b"".join(parts)
        return bytes(_interleave(parts, bytearray(sum(map(len, parts)))))
    item_lists = [_items(part) for part in parts]
    if dist == "b":
        return [item for items in item_lists for item in items]
    return _interleave(item_lists, [None] * sum(map(len, item_lists)))
