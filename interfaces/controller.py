"""Contracts of the controller: the registry of engines.

The controller hands out engine ids, keeps one queued engine per id and tells
observers about engines coming and going.  Client-facing views
(:class:`ipkernel.interfaces.multiengine.IMultiEngine`, the task controller)
are adapters of an :class:`IControllerBase`.
"""
from zope.interface import Attribute, Interface


class IControllerCore(Interface):
    """Register and unregister engines; notify observers."""

    engines = Attribute("dict: engine id -> the registered IEngineQueued engine.")

    def register_engine(engine, id=None, ip=None, port=None, pid=None):
        """Register ``engine`` and return (synchronously) ``{'id': assigned_id}``.

        ``engine`` provides IEngineQueued, or IEngineBase (then it is wrapped
        in a QueuedEngine).  The desired ``id`` is honoured when it is free;
        otherwise the lowest free id is used.  ``ip``/``port``/``pid`` are
        recorded for ``engine_info``.  Raises TypeError for a wrong argument
        type and :class:`ipkernel.error.ControllerError` when no id is free.
        Observers run after registration; one that raises is logged and kept.
        """

    def unregister_engine(id):
        """Forget engine ``id``; return True if it was registered, else False.

        Its waiting and running commands fail with
        :class:`ipkernel.error.EngineError`.  The id goes back to the pool
        unless ids are saved for returning engines.  Raises TypeError for a
        non-int id.
        """

    def on_register_engine_do(f, include_id, *args, **kwargs):
        """Call ``f(id, *args, **kwargs)`` (or ``f(*args, **kwargs)`` when
        ``include_id`` is false) after each registration."""

    def on_unregister_engine_do(f, include_id, *args, **kwargs):
        """Like :meth:`on_register_engine_do`, after each unregistration."""

    def on_register_engine_do_not(f):
        """Remove the first registration observer whose function is ``f``."""

    def on_unregister_engine_do_not(f):
        """Remove the first unregistration observer whose function is ``f``."""

    def on_n_engines_registered_do(n, f, *args, **kwargs):
        """Call ``f(*args, **kwargs)`` once, as soon as ``n`` engines are registered
        (now, if they already are)."""

    def wait_for_engines(n):
        """Return a Deferred that fires with the list of engine ids once at
        least ``n`` engines are registered."""

    def engine_info(id):
        """Return ``{'id', 'ip', 'port', 'pid', 'registered'}`` for a registered
        engine (``registered`` is a POSIX timestamp); KeyError otherwise."""

    def shutdown():
        """Ask whoever runs the controller to stop it (``kill(controller=True)``).

        Fires with None.  In-process this only calls the configured hook.
        """


class IControllerBase(IControllerCore):
    """Marker: what the client-facing views adapt from."""
