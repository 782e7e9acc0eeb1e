"""A leaner turn of Twisted's epoll reactor, for the processes that carry calls.

:func:`poll_once` waits for events and handles them as the epoll reactor's
``doPoll`` does, with two things left out of the common case:

* the legacy log context set around each event (``callWithLogger``: half a
  dozen Python calls an event, which only name the connection in
  messages logged by Twisted's old-style ``log.err`` while it is handled);
* for a plain TCP connection that is only readable, the reactor's dispatch
  to ``doRead``: its data is read here and given to its protocol.

Everything else (writes, hang-ups, a read that fails or finds the end of
the stream, a protocol that raises) goes through the reactor's own
``_doReadOrWrite``, so connections close and report exactly as before.
With many engines every call wakes each of them and the controller
handles one answer per engine: these few calls an event add up.

:func:`install` makes a reactor use it for every turn (``ipcontroller``);
the engine's main thread calls :func:`poll_once` itself while it drives
the loop (see :mod:`ipkernel.engine.reactorgate`).
"""
import functools
import sys
from select import EPOLLIN

from twisted.internet import tcp, unix
from twisted.python import log

#: Connection classes read here directly (plain TCP, also under TLS, whose
#: protocol is the TLS layer; Unix sockets, whose protocols here take no
#: file descriptors, so a plain read is what the reactor's would do).
_TCP = (tcp.Server, tcp.Client, unix.Server, unix.Client)


def usable(reactor):
    """True for a reactor :func:`poll_once` knows how to drive (epoll)."""
    return (hasattr(reactor, "_selectables") and hasattr(reactor, "_doReadOrWrite")
            and hasattr(reactor, "_disconnectSelectable")
            and hasattr(getattr(reactor, "_poller", None), "poll"))


def poll_once(reactor, poller, timeout):
    """Wait up to ``timeout`` seconds (None: no limit) on ``poller`` (the
    reactor's epoll object) and handle the events, as described above."""
    selectables = reactor._selectables
    try:
        events = poller.poll(-1 if timeout is None else timeout, len(selectables))
    except InterruptedError:
        return
    for fd, event in events:
        selectable = selectables.get(fd)
        if selectable is None:
            continue
        if event == EPOLLIN and type(selectable) in _TCP:
            try:
                data = selectable.socket.recv(selectable.bufferSize)
            except OSError:
                data = None  # the reactor reads again and reports it
            if data:
                try:
                    selectable.protocol.dataReceived(data)
                except BaseException:  # noqa: B902 - as the reactor does
                    why = sys.exc_info()[1]
                    log.err()
                    reactor._disconnectSelectable(selectable, why, True)
                continue
        reactor._doReadOrWrite(selectable, fd, event)


def install(reactor):
    """Make ``reactor`` turn with :func:`poll_once`; False (nothing done)
    when it is not an epoll reactor."""
    if not usable(reactor):
        return False
    reactor.doIteration = functools.partial(_iterate, reactor)
    return True


def _iterate(reactor, timeout):
    poll_once(reactor, reactor._poller, timeout)
