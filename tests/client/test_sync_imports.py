"""``with mec.sync_imports(): import ...``: imported here and on the engines,
aliases kept; only the block's own imports; an engine's failing import
raises CompositeError after the block.  Tier 1 (the statement reader, the
hook, the fake client) and tier 2 (real engines)."""
import builtins
import dis
import sys
import threading
import types

import pytest
import pytest_twisted

from ipkernel.client import CompositeError
from ipkernel.client.syncimports import SyncImports, import_statement

STATEMENTS = [
    "import json",
    "import os.path",
    "import os.path as p",
    "import numpy as np",
    "import xml.dom.minidom as md",
    "import json as json",
    "from math import sqrt",
    "from math import sqrt as s, pi",
    "from os import *",
]


def statements_of(source):
    """What import_statement reads back for each IMPORT_NAME of ``source``."""
    found = []

    def walk(code):
        for instruction in dis.get_instructions(code):
            if instruction.opname == "IMPORT_NAME":
                fromlist = code.co_consts and _fromlist_before(code, instruction.offset)
                found.append(import_statement(code, instruction.offset, instruction.argval,
                                              fromlist))
        for const in code.co_consts:
            if isinstance(const, types.CodeType):
                walk(const)
    walk(compile(source, "<test>", "exec"))
    return found


def _fromlist_before(code, offset):
    previous = None
    for instruction in dis.get_instructions(code):
        if instruction.offset == offset:
            return previous.argval
        previous = instruction


@pytest.mark.parametrize("statement", STATEMENTS)
def test_statements_are_read_back_with_their_aliases(statement):
    expected = "import json" if statement == "import json as json" else statement
    assert statements_of(statement) == [expected]
    if "*" not in statement:   # (a star import is for modules only)
        assert statements_of(f"def f():\n    {statement}\n") == [expected]


def test_several_names_on_one_line():
    assert statements_of("import json, os.path as p\nfrom math import (e,\n  tau as t)") == \
        ["import json", "import os.path as p", "from math import e, tau as t"]


def test_not_an_import_statement():
    code = compile("x = __import__('json')", "<test>", "exec")
    call = [i for i in dis.get_instructions(code) if i.opname == "CALL"][0]
    assert import_statement(code, call.offset, "json", None) is None


def recording():
    sent = []
    return sent, SyncImports(sent.append, quiet=True)


def test_the_blocks_imports_are_noted_and_sent_once():
    sent, sync = recording()
    with sync:
        import json
        import os.path as p
        from math import pi, sqrt as root
        assert json.dumps
        import json   # (twice: sent once)
    assert json.dumps and p.sep and pi and root(4) == 2
    assert sent == ["import json\nimport os.path as p\nfrom math import pi, sqrt as root"]
    assert sync.statements == ["import json", "import os.path as p",
                               "from math import pi, sqrt as root"]


def test_only_the_blocks_own_imports(tmp_path, monkeypatch):
    (tmp_path / "ipk_sync_helper.py").write_text("import colorsys\nimport json as j\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "ipk_sync_helper", raising=False)

    def elsewhere():
        import csv
        return csv
    imported_by_thread = []

    def in_a_thread():
        import shlex
        imported_by_thread.append(shlex)
    sent, sync = recording()
    with sync:
        import ipk_sync_helper   # its own imports are not the block's
        assert elsewhere().reader
        thread = threading.Thread(target=in_a_thread)
        thread.start()
        thread.join(10)
        from . import conftest   # relative: not sent
    assert imported_by_thread and ipk_sync_helper.j and conftest.FakeAsyncClient
    assert sync.statements == ["import ipk_sync_helper"]


def test_the_hook_is_only_active_inside_the_block():
    original = builtins.__import__
    sent, sync = recording()
    with sync:
        assert builtins.__import__ is not original
    assert builtins.__import__ is original
    import json
    assert json.dumps and sync.statements == []
    with pytest.raises(ZeroDivisionError):
        with SyncImports(sent.append):
            import colorsys
            assert colorsys.rgb_to_hsv
            1 / 0
    assert builtins.__import__ is original
    assert sent == []                      # a block that failed sends nothing
    with pytest.raises(ImportError):
        with SyncImports(sent.append):
            import ipk_no_such_module_anywhere
            assert not ipk_no_such_module_anywhere
    assert builtins.__import__ is original and sent == []


def test_nothing_imported_nothing_sent():
    sent, sync = recording()
    with sync:
        pass
    assert sent == []


def test_quiet_or_not(capsys):
    sent = []
    with SyncImports(sent.append, quiet=False):
        import json
        import os.path as p
        from math import sqrt
    assert json and p and sqrt
    assert capsys.readouterr().out.splitlines() == [
        "importing json on engine(s)", "importing os.path as p on engine(s)",
        "importing sqrt from math on engine(s)"]
    with SyncImports(sent.append, quiet=True):
        import colorsys
    assert colorsys and capsys.readouterr().out == ""
    assert sent == ["import json\nimport os.path as p\nfrom math import sqrt", "import colorsys"]


def test_a_block_is_entered_once():
    sent, sync = recording()
    with sync:
        with pytest.raises(RuntimeError, match="already active"):
            sync.__enter__()


def test_the_client_and_views_run_the_imports_on_their_targets(fake, capsys):
    fc, mec = fake
    with mec.sync_imports():
        import json
    assert fc.calls[-1] == ("execute", "import json", "all", True)
    assert capsys.readouterr().out == "importing json on engine(s)\n"
    mec.targets = [1, 3]
    with mec.sync_imports(quiet=True):
        import colorsys
    assert fc.calls[-1] == ("execute", "import colorsys", [1, 3], True)
    mec.block = False                      # the imports are always waited for
    with mec[2].sync_imports(quiet=True):
        from math import tau
    assert fc.calls[-1] == ("execute", "from math import tau", 2, True)
    with mec.sync_imports(quiet=True, targets=0):
        import shlex
    assert fc.calls[-1] == ("execute", "import shlex", 0, True)
    assert json and colorsys and tau and shlex


@pytest.mark.tier2
@pytest_twisted.ensureDeferred
async def test_sync_imports_on_engines(blocking):
    await blocking.start(3)

    def user():
        mec = blocking.client()
        with mec.sync_imports(quiet=True):
            import numpy, os.path as p  # noqa: E401 - as a user may write it
            from math import sqrt
        assert numpy and sqrt
        mec.execute("r = (numpy.__name__, p.__name__, sqrt(9))")
        assert mec.pull("r") == [("numpy", p.__name__, 3.0)] * 3
        with mec[1:].sync_imports(quiet=True):
            import json as j
        assert j and mec.execute("x = j.dumps(1)", targets=[1, 2])
        with pytest.raises(CompositeError, match="NameError"):
            mec[0].execute("j")
        # importable here only: the engines (in this process) do not find it
        sys.modules["ipk_only_here"] = types.ModuleType("ipk_only_here")
        with pytest.raises(CompositeError) as raised:
            with mec[[0, 2]].sync_imports(quiet=True):
                import ipk_only_here
                assert ipk_only_here
                del sys.modules["ipk_only_here"]
        lines = str(raised.value).splitlines()
        assert any(line.startswith("[0:execute]: ModuleNotFoundError") for line in lines)
        assert any(line.startswith("[2:execute]: ModuleNotFoundError") for line in lines)
    await blocking.run(user)
