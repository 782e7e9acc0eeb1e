"""``with client.sync_imports(): import numpy``: import here and on the engines.

While the block runs, ``builtins.__import__`` is wrapped.  Each import
statement run by the block's own code (not by the modules it imports, not by
functions it calls, not by other threads) is imported here as usual and
noted, aliases included, by reading the instructions that follow the
import in the block's bytecode.  When the block ends without an exception
the noted statements are executed on the engines, in one blocking call; an
import that fails there raises that call's
:class:`~ipkernel.error.CompositeError`.  Relative imports are not sent.
"""
import builtins
import dis
import sys

__all__ = ["SyncImports", "import_statement"]

_STORES = frozenset({"STORE_NAME", "STORE_GLOBAL", "STORE_FAST", "STORE_DEREF"})


def _after(code, offset):
    """The instructions of ``code`` after the one at ``offset``."""
    instructions = iter(dis.get_instructions(code))
    for instruction in instructions:
        if instruction.offset == offset:
            return instruction, instructions
    return None, iter(())


def import_statement(code, offset, name, fromlist):
    """The import statement whose ``IMPORT_NAME`` is at ``offset`` of ``code``
    (``name``/``fromlist`` as given to ``__import__``), aliases included; None
    if that instruction is not an import statement."""
    instruction, rest = _after(code, offset)
    if instruction is None or instruction.opname != "IMPORT_NAME" or instruction.argval != name:
        return None
    if not fromlist:
        # import a / import a.b / import a as x / import a.b as x
        attributes = False
        for following in rest:
            if following.opname == "IMPORT_FROM":
                attributes = True
            elif following.opname in _STORES:
                stored = following.argval
                if attributes or ("." not in name and stored != name):
                    return f"import {name} as {stored}"
                return f"import {name}"
            elif following.opname not in ("SWAP", "POP_TOP"):
                break
        return f"import {name}"
    if tuple(fromlist) == ("*",):
        return f"from {name} import *"
    names, pending = [], None
    for following in rest:
        if following.opname == "IMPORT_FROM" and pending is None:
            pending = following.argval
        elif following.opname in _STORES and pending is not None:
            stored = following.argval
            names.append(pending if stored == pending else f"{pending} as {stored}")
            pending = None
        else:
            break
    if len(names) != len(fromlist):  # not the expected shape: the names, without aliases
        names = list(fromlist)
    return f"from {name} import {', '.join(names)}"


def _describe(statement):
    """``import numpy`` -> ``numpy``; ``from math import sqrt`` -> ``sqrt from math``."""
    words = statement.split(" ", 3)
    if words[0] == "from":
        return f"{words[3]} from {words[1]}"
    return statement[len("import "):]


class SyncImports:
    """The context manager of :meth:`MultiEngineClient.sync_imports`.

    ``execute(lines)`` runs code on the engines (blocking); ``quiet=False``
    prints ``importing <what> on engine(s)`` for each statement sent.
    """

    def __init__(self, execute, quiet=False):
        self._execute = execute
        self.quiet = quiet
        #: The statements noted in the block, in order, each once.
        self.statements = []
        self._frame = None
        self._saved = None

    def __enter__(self):
        if self._frame is not None:
            raise RuntimeError("this sync_imports() block is already active")
        self._frame = sys._getframe(1)  # the frame running the with-statement
        self._saved = builtins.__import__
        saved, watched, note = self._saved, self._frame, self._note

        def __import__(name, globals=None, locals=None, fromlist=(), level=0):
            module = saved(name, globals, locals, fromlist, level)
            caller = sys._getframe(1)
            if caller is watched and level == 0:
                note(caller, name, fromlist)
            return module
        builtins.__import__ = __import__
        return self

    def _note(self, frame, name, fromlist):
        statement = import_statement(frame.f_code, frame.f_lasti, name, fromlist)
        if statement is not None and statement not in self.statements:
            self.statements.append(statement)

    def __exit__(self, exc_type, exc, tb):
        builtins.__import__ = self._saved
        self._frame = self._saved = None
        if exc_type is not None or not self.statements:
            return False  # a failed block: its own exception, nothing sent
        if not self.quiet:
            for statement in self.statements:
                print(f"importing {_describe(statement)} on engine(s)")
        self._execute("\n".join(self.statements))
        return False
