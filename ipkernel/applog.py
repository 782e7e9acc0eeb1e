"""Logging for the command-line programs (library code only emits events).

The programs log with :mod:`twisted.logger` to a file (``--logfile``,
appended to) or to stderr.  :func:`observer_for` builds the observer, which
the program adds to the global publisher for as long as it runs;
:func:`begin` is called once by a console entry point so Twisted stops
buffering early events; :func:`bridge_foolscap` forwards Foolscap's own
log messages (``flog``) that are unusual or worse.

What is shown:

* ipkernel's own events of the chosen level and above (``--log-level``,
  ``-v``, ``-q``: :func:`add_arguments`; default ``info``);
* Twisted's and Foolscap's routine messages ("Starting factory", "...
  starting on PORT", Foolscap's bridged messages below ``WEIRD``) count as
  ``debug``: they appear with ``--log-level debug`` (or ``-v``), while
  their warnings and errors appear at their own level;
* an event logged with ``ipkernel_always=True`` (the programs' ``ready``
  lines, which launchers wait for) whatever the level.

Every line passes through :func:`ipkernel.fcutil.redact_furls` before it is
written, so no FURL's secret part reaches a log, even inside a traceback.
"""
import argparse
import sys

from foolscap.logging import log as flog
from foolscap.logging.levels import BAD, UNUSUAL, WEIRD
from twisted.logger import (FileLogObserver, FilteringLogObserver, LogLevel, PredicateResult,
                            formatEventAsClassicLogText, formatTime, globalLogBeginner,
                            timeFormatRFC3339)

from ipkernel.clusterdir import open_private
from ipkernel.fcutil import redact_furls

_bridged = False

#: The names ``--log-level`` takes, from the most to the least verbose.
LEVEL_NAMES = ("debug", "info", "warn", "error", "critical")
#: ``--log-level`` when none is given.
DEFAULT_LEVEL = "info"
#: The event key that shows an event whatever the level (``log.info(..., ipkernel_always=True)``).
ALWAYS = "ipkernel_always"
#: Namespaces whose events keep their level; other events at ``info`` count as ``debug``.
OWN_NAMESPACES = ("ipkernel", "__main__")
_LEVELS = tuple(LogLevel.iterconstants())


def open_log(logfile=None):
    """The stream to log to: ``logfile`` opened for appending (mode 0600), or stderr."""
    if logfile is None:
        return sys.stderr
    return open(logfile, "a", encoding="utf-8", buffering=1, opener=open_private)


def event_level(event):
    """The level ``event`` is shown at (see the module doc): its own for
    ipkernel's events and for other warnings and errors; ``debug`` for
    Twisted's and Foolscap's routine messages."""
    if event.get("from-foolscap"):
        level = event.get("level", UNUSUAL)
        if not isinstance(level, int) or level < WEIRD:
            return LogLevel.debug
        return LogLevel.warn if level < BAD else LogLevel.error
    level = event.get("log_level")
    if level not in _LEVELS:   # an unusual event: shown like an info line
        level = LogLevel.info
    namespace = event.get("log_namespace")
    if level is LogLevel.info and not (isinstance(namespace, str)
                                       and namespace.startswith(OWN_NAMESPACES)):
        return LogLevel.debug
    return level


def _predicate_for(threshold):
    def predicate(event):
        if event.get(ALWAYS) is True or event_level(event) >= threshold:
            return PredicateResult.yes
        return PredicateResult.no
    return predicate


def format_event(event):
    """One event as a line of text (Twisted's classic format: time,
    ``[namespace#level]``, message), with every FURL redacted."""
    text = formatEventAsClassicLogText(event, formatTime=lambda t: formatTime(t, timeFormatRFC3339))
    return redact_furls(text) if text else text


def observer_for(stream, level=LogLevel.info):
    """An observer writing events to ``stream`` as text: those shown at
    ``level`` (a :class:`~twisted.logger.LogLevel` or one of
    :data:`LEVEL_NAMES`) and above, as the module doc says, FURLs redacted."""
    if isinstance(level, str):
        level = LogLevel.levelWithName(level)
    return FilteringLogObserver(FileLogObserver(stream, format_event), [_predicate_for(level)])


def _level_name(text):
    name = str(text).lower()
    name = "warn" if name == "warning" else name
    if name not in LEVEL_NAMES:
        raise argparse.ArgumentTypeError(
            f"invalid level {text!r} (choose from {', '.join(LEVEL_NAMES)})")
    return name


class _Step(argparse.Action):
    """``-v`` / ``-q``: one level more or less verbose than the level so far."""

    def __init__(self, option_strings, dest, step, **kwargs):
        self.step = step
        super().__init__(option_strings, dest, nargs=0, **kwargs)

    def __call__(self, parser, namespace, values, option_string=None):
        current = getattr(namespace, self.dest, None)
        if current not in LEVEL_NAMES:
            current = DEFAULT_LEVEL
        index = min(max(LEVEL_NAMES.index(current) + self.step, 0), len(LEVEL_NAMES) - 1)
        setattr(namespace, self.dest, LEVEL_NAMES[index])


def add_arguments(parser, program, default=DEFAULT_LEVEL, note="", short_quiet=True):
    """Give ``parser`` the options every program has: ``--version``
    (prints ``PROGRAM VERSION``, exits 0), ``--log-level``, ``-v`` and ``-q``.

    ``default=argparse.SUPPRESS`` is for the subcommands of ``ipcluster``,
    whose top level has the options too; ``note`` is added to the help of
    the options.  ``short_quiet=False`` leaves ``-q`` to the program (the
    batch modes of ``ipcluster`` use it for the queue, as 0.10 did).  The level ends up in ``options.log_level`` (one of
    :data:`LEVEL_NAMES`).
    """
    from ipkernel import __version__

    if default is not argparse.SUPPRESS:
        parser.add_argument("--version", action="version", version=f"{program} (ipkernel) {__version__}",
                            help="print the program's name and version, and exit")
    group = parser.add_argument_group(
        "logging",
        "ipkernel's own lines of the level chosen and above are logged; Twisted's and "
        "Foolscap's routine messages only at debug; the ready line always.  -v and -q "
        "move one level from the level given so far (default info), so -qq is error and "
        "-qqq critical, -v is debug (more -v change nothing)" + (f"; {note}" if note else ""))
    group.add_argument("--log-level", type=_level_name, default=default, metavar="LEVEL",
                       help=f"one of {', '.join(LEVEL_NAMES)} (default {DEFAULT_LEVEL})")
    group.add_argument("-v", "--verbose", action=_Step, step=-1, dest="log_level",
                       default=default, help="one level more verbose (info -> debug)")
    group.add_argument(*(["-q"] if short_quiet else []), "--quiet", action=_Step, step=+1, dest="log_level",
                       default=default, help="one level quieter (info -> warn; repeatable)")
    return parser


def level_of(options):
    """The :class:`~twisted.logger.LogLevel` chosen by ``options`` (see
    :func:`add_arguments`; ``info`` when it has none)."""
    return LogLevel.levelWithName(getattr(options, "log_level", None) or DEFAULT_LEVEL)


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
