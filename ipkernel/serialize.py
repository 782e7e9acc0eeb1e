"""Serialisation: the only module of ipkernel that pickles or unpickles.

Objects become a :class:`Serialized`: a list of frames (bytes-like) plus a
type descriptor and plain metadata.

* ``'ndarray'``: a numpy array with a plain dtype travels as its raw memory
  (one frame, no copy) with ``shape`` and ``dtype`` in the metadata.
* ``'pickle'``: anything else, pickled with cloudpickle at protocol 5, so
  lambdas, closures and interactively defined functions work; large
  contiguous buffers inside the object (numpy arrays in a dict, say) become
  out-of-band frames instead of being copied into the pickle.

Controllers never call :func:`unserialize`: they move Serialized objects as
opaque bytes.
"""
import pickle
import sys

import cloudpickle
from zope.interface import implementer

from ipkernel.error import PayloadTooLarge, SerializationError
from ipkernel.interfaces.serialized import ISerialized, IUnSerialized

PROTOCOL = 5

def _numpy(required=False):
    """numpy if this process has imported it (an ndarray can only exist then),
    else None; with ``required``, import it (ImportError if not installed).

    Never importing numpy just to look saves every process its import time
    (the controller, which never opens a value, never needs it)."""
    np = sys.modules.get("numpy")
    if np is None and required:
        import numpy as np
    return np


@implementer(ISerialized)
class Serialized:
    """An object in serialized form: ``frames``, ``type_descriptor``, ``metadata``."""

    __slots__ = ("frames", "type_descriptor", "metadata")

    def __init__(self, data, type_descriptor="pickle", metadata=None):
        self.frames = list(data) if isinstance(data, (list, tuple)) else [data]
        self.type_descriptor = type_descriptor
        self.metadata = dict(metadata or {})

    def get_data(self):
        return self.frames[0]

    def get_buffers(self):
        return list(self.frames)

    @property
    def nbytes(self):
        """Total size of all frames, in bytes."""
        return sum(memoryview(f).nbytes for f in self.frames)

    def get_data_size(self, units=10.0 ** 6):
        return self.nbytes / units

    def get_type_descriptor(self):
        return self.type_descriptor

    def get_metadata(self):
        return self.metadata

    def __repr__(self):
        return f"<Serialized {self.type_descriptor} {self.nbytes} bytes>"


@implementer(IUnSerialized)
class UnSerialized:
    """An object in live form (the other side of :class:`Serialized`)."""

    __slots__ = ("obj",)

    def __init__(self, obj):
        self.obj = obj

    def get_object(self):
        return self.obj


def _is_plain_array(obj):
    np = _numpy()
    return (np is not None and type(obj) is np.ndarray
            and not obj.dtype.hasobject and obj.dtype.fields is None)


def dumps(obj):
    """Return a list of frames: the pickle, then its out-of-band buffers.

    Raises :class:`~ipkernel.error.SerializationError` naming the type when
    ``obj`` cannot be pickled.
    """
    buffers = []
    try:
        head = cloudpickle.dumps(obj, protocol=PROTOCOL, buffer_callback=buffers.append)
    except Exception as exc:
        raise SerializationError(
            f"cannot serialize an object of type {type(obj).__module__}."
            f"{type(obj).__qualname__}: {exc}. Send plain data instead, or make the "
            f"object picklable (define its class at module level, or give it "
            f"__reduce__)") from exc
    frames = [head]
    for buf in buffers:
        raw = buf.raw()
        frames.append(raw if raw.contiguous else bytes(raw))
    return frames


def loads(frames):
    """Rebuild an object from the frames made by :func:`dumps`."""
    frames = list(frames)
    try:
        return pickle.loads(frames[0], buffers=frames[1:])
    except Exception as exc:
        raise SerializationError(f"cannot rebuild a serialized object: {type(exc).__name__}: {exc}") from exc


def serialize(obj):
    """Return the :class:`Serialized` form of ``obj``."""
    if _is_plain_array(obj):
        array = obj if obj.flags.c_contiguous else _numpy().ascontiguousarray(obj)
        metadata = {"shape": tuple(array.shape), "dtype": array.dtype.str}
        return Serialized([memoryview(array).cast("B") if array.size else b""],
                          "ndarray", metadata)
    return Serialized(dumps(obj), "pickle", {})


def unserialize(serialized):
    """Rebuild the object held by a :class:`Serialized`."""
    kind = serialized.type_descriptor
    if kind == "pickle":
        return loads(serialized.frames)
    if kind == "ndarray":
        try:
            np = _numpy(required=True)
        except ImportError:
            raise SerializationError("received a numpy array, but numpy is not installed "
                                     "here") from None
        md = serialized.metadata
        data = serialized.frames[0]
        array = np.frombuffer(data, dtype=np.dtype(md["dtype"])).reshape(md["shape"])
        return array if array.flags.writeable else array.copy()
    raise SerializationError(f"unknown type descriptor {kind!r}: expected 'pickle' or 'ndarray'")


def check_size(serialized, limit):
    """Raise :class:`~ipkernel.error.PayloadTooLarge` when ``serialized``
    exceeds ``limit`` bytes (``limit=None`` means no cap); return
    ``serialized`` otherwise."""
    if limit is not None and serialized.nbytes > limit:
        raise PayloadTooLarge(
            f"payload of {serialized.nbytes} bytes exceeds the cap of {limit} bytes; "
            f"send the data in smaller pieces (scatter), or raise the cap")
    return serialized


def SerializeIt(unserialized):
    """Adapter IUnSerialized -> ISerialized."""
    return serialize(unserialized.get_object())


def UnSerializeIt(serialized):
    """Adapter ISerialized -> IUnSerialized."""
    return UnSerialized(unserialize(serialized))


def _register_adapters():
    from twisted.python import components

    for factory, source, target in ((SerializeIt, IUnSerialized, ISerialized),
                                    (UnSerializeIt, ISerialized, IUnSerialized)):
        if components.getAdapterFactory(source, target, None) is None:
            components.registerAdapter(factory, source, target)


_register_adapters()
