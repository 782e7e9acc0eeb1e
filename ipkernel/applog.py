"""Logging for the command-line programs (library code only emits events).

The programs log with :mod:`twisted.logger` to a file (``--logfile``,
appended to) or to stderr.  :func:`observer_for` builds the observer, which
the program adds to the global publisher for as long as it runs;
:func:`begin` is called once by a console entry point so Twisted stops
buffering early events; :func:`bridge_foolscap` forwards Foolscap's own
log messages (``flog``) that are unusual or worse.
"""
import sys

from foolscap.logging import log as flog
from foolscap.logging.levels import UNUSUAL
from twisted.logger import (FilteringLogObserver, LogLevel, LogLevelFilterPredicate,
                            globalLogBeginner, textFileLogObserver)

_bridged = False


def open_log(logfile=None):
    """The stream to log to: ``logfile`` opened for appending, or stderr."""
    if logfile is None:
        return sys.stderr
    return open(logfile, "a", encoding="utf-8", buffering=1)


def observer_for(stream, level=LogLevel.info):
    """An observer writing events of ``level`` and above to ``stream`` as text."""
    predicate = LogLevelFilterPredicate(defaultLogLevel=level)
    return FilteringLogObserver(textFileLogObserver(stream), [predicate])


def begin():
    """End Twisted's start-up buffering (once per process; observers are added
    to ``globalLogPublisher`` afterwards)."""
    globalLogBeginner.beginLoggingTo([], discardBuffer=True, redirectStandardIO=False)


def bridge_foolscap():
    """Forward Foolscap log events that are UNUSUAL or worse to Twisted (once)."""
    global _bridged
    if not _bridged:
        _bridged = True
        flog.bridgeLogsToTwisted(filter=lambda event: event.get("level", 0) >= UNUSUAL)
