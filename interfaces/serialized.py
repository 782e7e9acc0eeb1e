"""Contracts of serialized objects: opaque bytes with a type descriptor.

A controller moves :class:`ISerialized` objects between clients and engines
without ever rebuilding them; only clients and engines do.
"""
from zope.interface import Interface


class ISerialized(Interface):
    """An object in its serialized form."""

    def get_data():
        """Return the main buffer (bytes-like): the pickle, or an array's memory."""

    def get_buffers():
        """Return the list of all frames: the main buffer first, then out-of-band buffers."""

    def get_data_size(units=10.0 ** 6):
        """Return the total size of all frames divided by ``units`` (MB by default)."""

    def get_type_descriptor():
        """Return ``'pickle'`` or ``'ndarray'``."""

    def get_metadata():
        """Return a dict of plain data (for arrays: ``shape`` and ``dtype``)."""


class IUnSerialized(Interface):
    """An object in its live form."""

    def get_object():
        """Return the object."""
