"""The IPython extension: run code on the engines from IPython and Jupyter.

``%load_ext ipkernel`` (or ``mec.activate()``) adds:

``%px CODE``
    Run ``CODE`` on the engines of the active client (its ``targets``),
    waiting for it.  What the engines print appears as they print it, one
    ``[stdout:N]``/``[stderr:N]`` prefix per line; the value of a last
    expression as ``Out[N:k]: value`` (engine N, its command k).  Options:
    ``--targets 0,2`` / ``-t 0,2`` (or ``all``), ``--noblock`` (return the
    :class:`~ipkernel.client.PendingResult` at once), ``--no-stream``.
``%%px``
    The same for a whole cell (the options on the first line).
``%autopx``
    From now on run every cell on the engines, until ``%autopx`` again.
``%result`` (also ``%pxresult``)
    Show again the output and values of the last ``%px``; ``%result N``:
    the result dicts of command N of each engine.

The magics use the client given to :func:`activate` (``mec.activate()``);
without one, a :class:`~ipkernel.client.MultiEngineClient` of the default
cluster directory, made on first use.
"""
import codeop
import sys

try:
    from IPython.core.error import UsageError
    from IPython.core.magic import Magics, line_cell_magic, line_magic, magics_class
except ImportError as missing:  # the extension is for IPython users; the rest works without
    raise ImportError("ipkernel.magic is the IPython extension and needs IPython, which is not "
                      "installed: pip install 'ipkernel[ipython]'") from missing

__all__ = ["ParallelMagics", "activate", "active_client", "load_ipython_extension",
           "unload_ipython_extension"]

_active = None


def activate(client):
    """Make ``client`` (a MultiEngineClient, or a view of one) the one the
    magics use; register them in the running IPython, if any."""
    global _active
    _active = client
    try:
        from IPython import get_ipython
    except ImportError:
        return
    shell = get_ipython()
    if shell is not None and not shell.magics_manager.registry.get("ParallelMagics"):
        load_ipython_extension(shell)


def active_client():
    """The client the magics use (made on first use when none is active)."""
    global _active
    if _active is None:
        from ipkernel.client import MultiEngineClient

        _active = MultiEngineClient()
    return _active


def _targets(text):
    """``--targets`` text (``all``, ``3``, ``0,2``, ``1-3``) as targets."""
    text = text.strip()
    if text == "all":
        return "all"
    ids = []
    try:
        for part in text.split(","):
            if "-" in part.strip()[1:]:
                first, last = part.split("-", 1)
                ids.extend(range(int(first), int(last) + 1))
            elif part.strip():
                ids.append(int(part))
    except ValueError:
        raise UsageError(f"--targets takes 'all', an engine id or ids like 0,2 or 1-3, "
                         f"not {text!r}") from None
    return ids[0] if len(ids) == 1 else ids


_FLAGS = {"--noblock": "noblock", "--no-stream": "no_stream"}


def _split_options(line):
    """``(options, code)`` of a ``%px`` line: the leading options, the rest
    verbatim (quotes and all)."""
    options, rest = {}, line.lstrip()
    while rest.startswith("-"):
        token, _, after = rest.partition(" ")
        if token == "--":
            return options, after
        if token in _FLAGS:
            options[_FLAGS[token]] = True
        elif token in ("-t", "--targets"):
            value, _, after = after.lstrip().partition(" ")
            if not value:
                raise UsageError(f"{token} needs engines: all, an id, or ids like 0,2 or 1-3")
            options["targets"] = value
        elif token.startswith("--targets="):
            options["targets"] = token.split("=", 1)[1]
        else:
            raise UsageError(f"%px: unknown option {token!r} (options: -t/--targets, "
                             f"--noblock, --no-stream; -- before code that starts with -)")
        rest = after.lstrip()
    return options, rest


def show_values(results, out=None):
    """Print ``Out[N:k]: value`` for each execute result that has a value."""
    out = out or sys.stdout
    for result in results or ():
        display = result.get("display") if isinstance(result, dict) else None
        if isinstance(display, dict) and (display.get("pprint") or display.get("repr")):
            text = display.get("pprint") or display.get("repr")
            prefix = f"Out[{result.get('id', '?')}:{result.get('number', '?')}]: "
            indent = "\n" + " " * len(prefix)
            out.write(prefix + indent.join(text.split("\n")) + "\n")


@magics_class
class ParallelMagics(Magics):
    """``%px``, ``%%px``, ``%autopx`` and ``%result``; see :mod:`ipkernel.magic`."""

    def __init__(self, shell):
        super().__init__(shell)
        #: The PendingResult of the last %px (what %result shows).
        self.last_result = None
        self._autopx = False

    # -- %px ----------------------------------------------------------------------------

    @line_cell_magic
    def px(self, line, cell=None):
        """Run code on the engines: ``%px [options] CODE`` or a ``%%px [options]`` cell.

        Options (before the code): ``-t``/``--targets TARGETS`` (``all``,
        ``3``, ``0,2`` or ``1-3``; default: the client's targets),
        ``--noblock`` (return the PendingResult at once), ``--no-stream``
        (show the output once the command finished), ``--`` (the code starts
        here, even with a ``-``)."""
        options, code = _split_options(line)
        if cell is not None:
            if code.strip():
                raise UsageError(f"%%px takes options on its line, not code: {code.strip()!r}")
            code = cell
        if not code.strip():
            raise UsageError("%px needs code to run (e.g. %px import numpy)")
        targets = options.get("targets")
        return self.run(code, targets=None if targets is None else _targets(targets),
                        block=not options.get("noblock", False),
                        stream=not options.get("no_stream", False))

    def run(self, code, targets=None, block=True, stream=True):
        """What ``%px`` does: run ``code`` on ``targets`` (None: the client's)."""
        from ipkernel.client.view import View

        client = active_client()
        if isinstance(client, View):   # its client, on its engines
            client, targets = client.client, client.targets if targets is None else targets
        pending = client.execute(code, targets=targets, block=False)
        pending.stream = stream
        self.last_result = pending
        if not block:
            return pending
        results = client._wait_interruptibly(pending, client.timeout) \
            if hasattr(client, "_wait_interruptibly") else pending.get_result()
        if not stream:
            pending.display_outputs()
        show_values(results)
        return None

    # -- %autopx ------------------------------------------------------------------------

    @line_magic
    def autopx(self, line=""):
        """Toggle running every following cell on the engines."""
        cleanup = self.shell.input_transformers_cleanup
        if self._autopx:
            if self._to_px in cleanup:
                cleanup.remove(self._to_px)
            self._autopx = False
            print("%autopx disabled: cells run here again")
        else:
            cleanup.append(self._to_px)
            self._autopx = True
            print("%autopx enabled: every cell runs on the engines; %autopx to stop")

    def _to_px(self, lines):
        """The cleanup transformer of %autopx: a cell becomes a %%px cell."""
        source = "".join(lines)
        first = source.lstrip().split("\n", 1)[0].strip()
        if not source.strip() or first.startswith(("%", "!")):
            return lines  # magics and shell commands run here, %autopx itself too
        try:
            if codeop.compile_command(source, "<autopx>", "exec") is None \
                    and not source.endswith("\n\n"):
                return lines  # incomplete: let IPython ask for more
        except (SyntaxError, ValueError, OverflowError):
            pass  # the engines report it, with their traceback
        return [f"get_ipython().run_cell_magic('px', '', {source!r})\n"]

    # -- %result ------------------------------------------------------------------------

    @line_magic
    def result(self, line=""):
        """Show the output and values of the last %px (``%result N``: the
        result dicts of command N of each engine)."""
        if line.strip():
            try:
                number = int(line)
            except ValueError:
                raise UsageError(f"%result takes a command number, not {line.strip()!r}") \
                    from None
            return active_client().get_result(number)
        pending = self.last_result
        if pending is None:
            print("no %px has run yet", file=sys.stderr)
            return None
        results = pending.get_result()
        pending.display_outputs()
        show_values(results)
        return None

    @line_magic
    def pxresult(self, line=""):
        """The same as ``%result``."""
        return self.result(line)


def load_ipython_extension(ipython):
    """Called by ``%load_ext ipkernel``: register the parallel magics."""
    ipython.register_magics(ParallelMagics)


def unload_ipython_extension(ipython):
    """Called by ``%unload_ext ipkernel``: stop %autopx if it is on."""
    magics = ipython.magics_manager.registry.get("ParallelMagics")
    if magics is not None and magics._autopx:
        magics.autopx()
