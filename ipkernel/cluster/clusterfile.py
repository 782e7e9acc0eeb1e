"""The clusterfile of ``ipcluster ssh``: IPython 0.10's format.

A clusterfile is a small Python file naming the hosts and how many engines
each gets::

    send_furl = True          # copy the engine FURL to each host (default False)
    engines = {
        "node1": 4,
        "me@node2": 2,        # user@host: log in as that user
    }

:func:`load` runs it with restricted globals (a few harmless builtins, no
``import``) and returns a :class:`ClusterFile`; every problem is a
:class:`ClusterFileError` naming the file, the line where Python gives one,
and what to write instead.  :func:`check_engines` validates a
``{host: count}`` dict given directly (``SSHEngineSet(engines=...)``).
"""
import builtins
import re
import traceback
from dataclasses import dataclass, field
from pathlib import Path

#: Builtins a clusterfile may use (building a dict of hosts needs no more).
SAFE_BUILTINS = ("True", "False", "None", "abs", "bool", "dict", "enumerate", "float", "int",
                 "len", "list", "max", "min", "range", "reversed", "set", "sorted", "str",
                 "sum", "tuple", "zip")
#: A host as ssh takes it: ``host`` or ``user@host``, no spaces, not an option.
_HOST = re.compile(r"^(?:[^\s@/'\"`$;&|<>()\\]+@)?[A-Za-z0-9_.:\[\]%-]+$")
EXAMPLE = "engines = {'node1': 4, 'me@node2': 2}"


class ClusterFileError(ValueError):
    """A clusterfile (or an engines dict) that cannot be used; the message says why."""


@dataclass
class ClusterFile:
    """What a clusterfile says: ``engines`` ({host: count}, in the file's
    order), ``send_furl`` and the ``path`` it came from."""

    engines: dict
    send_furl: bool = False
    path: Path | None = field(default=None)

    @property
    def total(self):
        """The number of engines over all hosts."""
        return sum(self.engines.values())


def check_host(host, where="engines"):
    """``host`` if it is ``host`` or ``user@host`` (no spaces, quotes or shell
    characters, not starting with ``-``, which ssh would read as an option);
    else ClusterFileError."""
    if not isinstance(host, str) or not host:
        raise ClusterFileError(f"{where}: a host must be a non-empty string like 'node1' or "
                               f"'me@node1', not {host!r}")
    if host.startswith("-") or not _HOST.match(host):
        raise ClusterFileError(f"{where}: {host!r} is not a host name: write 'host' or "
                               f"'user@host' (no spaces or shell characters, no leading '-')")
    return host


def check_engines(engines, where="engines"):
    """``engines`` as a checked ``{host: count}`` dict (a new dict, same order).

    ClusterFileError unless it is a non-empty dict of host names to
    positive ints; ``where`` names the source in the message."""
    if not isinstance(engines, dict):
        raise ClusterFileError(f"{where} must be a dict {{host: count}} such as {EXAMPLE}, "
                               f"not {type(engines).__name__}")
    if not engines:
        raise ClusterFileError(f"{where} is empty: name at least one host, e.g. {EXAMPLE}")
    checked = {}
    for host, count in engines.items():
        check_host(host, where)
        if isinstance(count, bool) or not isinstance(count, int) or count < 1:
            raise ClusterFileError(f"{where}: the count of {host!r} must be a positive int "
                                   f"(the number of engines on that host), not {count!r}")
        checked[host] = count
    return checked


def _line_of(exc, filename):
    """The line of ``filename`` where ``exc`` was raised (the innermost), or None."""
    line = None
    for frame in traceback.extract_tb(exc.__traceback__):
        if frame.filename == filename:
            line = frame.lineno
    return line


def parse(source, path="<clusterfile>"):
    """The :class:`ClusterFile` that Python text ``source`` defines (see :func:`load`)."""
    name = str(path)
    try:
        code = compile(source, name, "exec")
    except SyntaxError as exc:
        text = (exc.text or "").strip()
        shown = f": {text}" if text else ""
        raise ClusterFileError(f"clusterfile {name}, line {exc.lineno}: {exc.msg}{shown}; "
                               f"it must be Python such as: send_furl = True; "
                               f"{EXAMPLE}") from None
    safe = {key: getattr(builtins, key) for key in SAFE_BUILTINS}
    namespace = {"__builtins__": safe, "__name__": "__clusterfile__"}
    try:
        exec(code, namespace)
    except ImportError as exc:
        line = _line_of(exc, name)
        raise ClusterFileError(f"clusterfile {name}, line {line}: a clusterfile cannot import "
                               f"modules; write the hosts out: {EXAMPLE}") from None
    except Exception as exc:
        line = _line_of(exc, name)
        raise ClusterFileError(f"clusterfile {name}, line {line}: {type(exc).__name__}: {exc} "
                               f"(only these builtins are available: "
                               f"{', '.join(SAFE_BUILTINS)})") from None
    if "engines" not in namespace:
        defined = sorted(k for k in namespace if not k.startswith("_"))
        seen = f" (it defines: {', '.join(defined)})" if defined else ""
        raise ClusterFileError(f"clusterfile {name} defines no 'engines'{seen}: add a line "
                               f"such as {EXAMPLE}")
    engines = check_engines(namespace["engines"], f"clusterfile {name}: engines")
    send_furl = namespace.get("send_furl", False)
    if not isinstance(send_furl, bool):
        raise ClusterFileError(f"clusterfile {name}: send_furl must be True or False, not "
                               f"{send_furl!r}")
    return ClusterFile(engines, send_furl, Path(path) if path != "<clusterfile>" else None)


def load(path):
    """Read and run clusterfile ``path``; return its :class:`ClusterFile`.

    Raises :class:`ClusterFileError` for a file that cannot be read, a
    syntax error (with its line), an error while running it (with its
    line), no ``engines``, a count that is not a positive int, a bad host
    name or a ``send_furl`` that is not True/False."""
    path = Path(path).expanduser()
    try:
        source = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ClusterFileError(f"clusterfile {path} does not exist: give the path of a "
                               f"Python file with {EXAMPLE}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ClusterFileError(f"clusterfile {path} cannot be read: "
                               f"{getattr(exc, 'strerror', None) or exc}") from None
    return parse(source, path)
