"""Large Serialized values travel on the data channel; Foolscap carries a reference.

:func:`offload` sends the frames of every large Serialized inside a value
(lists, tuples and dict values are walked) as blobs and returns the value
with each one replaced by a *reference*: a Serialized without frames whose
metadata says which blob holds them and how to cut it.  :func:`resolve`
does the reverse on the receiving side.  Neither unpickles anything.
"""

from twisted.internet import defer, threads

from ipkernel.datachannel.peer import new_blob_id
from ipkernel.serialize import Serialized

#: A Serialized at least this big goes on the data channel.
THRESHOLD = 256 * 1024
#: Metadata key of a reference.
REF_KEY = "$blob"
#: Metadata key the controller adds to a reference whose blob it sends to the
#: client unasked (the client then waits for it instead of asking).
PUSHED_KEY = "$pushed"
#: Seconds a receiver waits for the blob of a reference.
WAIT = 120.0


def is_ref(value):
    return isinstance(value, Serialized) and REF_KEY in value.metadata


def blob_id(ref):
    """The id of the blob a reference refers to (bytes)."""
    return bytes.fromhex(ref.metadata[REF_KEY][0])


def _walk(value, leaf):
    """``value`` with ``leaf(s)`` in place of every Serialized ``s``."""
    if isinstance(value, Serialized):
        return leaf(value)
    if isinstance(value, list):
        return [_walk(v, leaf) for v in value]
    if isinstance(value, tuple):
        return tuple(_walk(v, leaf) for v in value)
    if isinstance(value, dict):
        return {k: _walk(v, leaf) for k, v in value.items()}
    return value


#: Types of values with nothing inside to walk (skipped without a call).
_PLAIN = frozenset({str, int, float, bool, type(None), bytes})


def _leaves(value):
    """Every Serialized inside ``value`` (lists, tuples and dict values
    walked), as a list."""
    found = []
    if type(value) not in _PLAIN:
        _collect(value, found)
    return found


def _collect(value, found):
    if isinstance(value, Serialized):
        found.append(value)
        return
    if isinstance(value, dict):
        value = value.values()
    elif not isinstance(value, (list, tuple)):
        return
    plain = _PLAIN
    for v in value:
        if type(v) not in plain:
            _collect(v, found)


def blob_ids(value):
    """The blob ids of the references inside ``value``."""
    return [blob_id(s) for s in _leaves(value) if is_ref(s)]


def has_large(value, threshold=THRESHOLD):
    """True when ``value`` holds a Serialized that :func:`offload` would send."""
    return any(s.nbytes >= threshold for s in _leaves(value))


def nbytes(s):
    """The size of a Serialized's frames, also when they travel as a reference."""
    if is_ref(s):
        sizes = s.metadata[REF_KEY][1]
        return sum(int(n) for n in sizes) if isinstance(sizes, list) else 0
    return s.nbytes


def offload(value, peer, to, threshold=THRESHOLD):
    """Send the large Serialized inside ``value`` to ``to`` over ``peer``.

    Returns ``(value with references, sends)`` where ``sends`` is a list of
    ``(blob_id, buffers)`` still to be sent (see :func:`send`); with no peer
    (or nothing large) ``value`` comes back unchanged.
    """
    sends = []
    if peer is None or not peer.connected:
        return value, sends

    def leaf(s):
        if s.nbytes < threshold or is_ref(s):
            return s
        blob_id = new_blob_id()
        sizes = [memoryview(f).nbytes for f in s.frames]
        sends.append((blob_id, list(s.frames)))
        return Serialized([], s.type_descriptor,
                          dict(s.metadata, **{REF_KEY: [blob_id.hex(), sizes]}))
    return _walk(value, leaf), sends


def send_now(peer, to, sends):
    """Send the blobs of :func:`offload`, in the calling thread (not the reactor's)."""
    for blob_id, buffers in sends:
        peer.send_blob(blob_id, to, buffers)


def send(peer, to, sends):
    """Send the blobs of :func:`offload` in a pool thread; a Deferred."""
    if not sends:
        return defer.succeed(None)
    return threads.deferToThreadPool(peer.reactor, peer.reactor.getThreadPool(),
                                     send_now, peer, to, sends)


def offload_blocking(value, peer, to, threshold=THRESHOLD):
    """:func:`offload` and send at once, in the calling thread (not the reactor's)."""
    value, sends = offload(value, peer, to, threshold)
    send_now(peer, to, sends)
    return value


def _rebuild(ref, blob):
    blob_hex, sizes = ref.metadata[REF_KEY]
    view = memoryview(blob)
    if sum(sizes) != view.nbytes:
        raise ValueError(f"bulk data {blob_hex} holds {view.nbytes} bytes, not {sum(sizes)}")
    frames, start = [], 0
    for size in sizes:
        frames.append(view[start:start + size])
        start += size
    metadata = {k: v for k, v in ref.metadata.items() if k not in (REF_KEY, PUSHED_KEY)}
    return Serialized(frames, ref.type_descriptor, metadata)


def route(value, push):
    """``value`` with :data:`PUSHED_KEY` added to each reference for which
    ``push(blob_id)`` is true (the controller sends that blob unasked)."""
    def leaf(s):
        if is_ref(s) and push(blob_id(s)):
            return Serialized(s.frames, s.type_descriptor, dict(s.metadata, **{PUSHED_KEY: 1}))
        return s
    return _walk(value, leaf) if any(is_ref(s) for s in _leaves(value)) else value


def resolve(value, get_blob):
    """A Deferred of ``value`` with every reference replaced by its Serialized.

    ``get_blob(blob_id)`` returns a Deferred of the blob's bytes (the store's
    ``wait`` on an engine, ``fetch`` on a client); for a reference marked
    :data:`PUSHED_KEY` it is called as ``get_blob(blob_id, True)``.  Values
    without references come back at once.
    """
    found = [s for s in _leaves(value) if is_ref(s)]
    if not found:
        return defer.succeed(value)
    ds = [get_blob(blob_id(ref), True) if ref.metadata.get(PUSHED_KEY) else get_blob(blob_id(ref))
          for ref in found]

    def rebuild(blobs):
        by_ref = {id(ref): _rebuild(ref, blob) for ref, blob in zip(found, blobs)}
        return _walk(value, lambda s: by_ref.get(id(s), s))
    if len(ds) == 1:  # the usual case: no DeferredList
        return ds[0].addCallback(lambda blob: rebuild([blob]))
    d = defer.gatherResults(ds, consumeErrors=True)
    d.addErrback(lambda f: f.value.subFailure)  # the first failure, not a FirstError
    return d.addCallback(rebuild)
