"""How remote errors look in IPython and Jupyter (``_render_traceback_``).

A failed remote call shows, per failed engine, its ``[id:method]`` label
and the traceback the engine formatted, and none of the client's own
frames (client, Twisted, Foolscap, lanes).

* tier 1: exceptions rebuilt from wire records, and a hand-made
  CompositeError raised in a real ``ipython`` process;
* tier 3: a real ``ipython`` process (and a Jupyter kernel run by nbclient)
  using a :class:`~ipkernel.cluster.LocalCluster` of two engines, started
  here and always stopped.
"""
import os
import pickle
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from ipkernel import error, wire
from ipkernel.error import CompositeError, RemoteError, tag_exception

IPYTHON = str(Path(sys.executable).with_name("ipython"))
#: Bound for one ipython process.
IPYTHON_TIMEOUT = 60
#: What must not show in a remote error: the client side's frames.
CLIENT_SIDE = ("twisted", "foolscap", "ipkernel/client", "lane", "wire.py", "---> ")


def run_ipython(code, cwd):
    """The combined output of ``ipython -c code`` (plain text, no config)."""
    env = dict(os.environ, IPYTHONDIR=str(cwd / "ipythondir"), PYTHONDONTWRITEBYTECODE="1")
    done = subprocess.run(
        [IPYTHON, "--quick", "--no-banner", "--colors=nocolor", "-c", code],
        cwd=cwd, env=env, capture_output=True, text=True, timeout=IPYTHON_TIMEOUT)
    return done.stdout + done.stderr


def assert_no_client_frames(text):
    lowered = text.lower()
    assert not [word for word in CLIENT_SIDE if word in lowered], text


# --------------------------------------------------------------------------- tier 1

ENGINE_TEXT = ('Traceback (most recent call last):\n'
               '  File "<ipkernel-input-4>", line 1, in <module>\n'
               '    1/0\n'
               'ZeroDivisionError: division by zero\n')


def _round_trip(exc):
    """``exc`` as a client gets it back from an engine's record."""
    return wire.exception_from_record(wire.record_from_exception(exc))


@pytest.mark.tier1
def test_an_exception_rebuilt_from_an_engine_record_renders_its_engine_traceback():
    sent = tag_exception(ZeroDivisionError("division by zero"), 1, "execute", ENGINE_TEXT)
    back = _round_trip(sent)
    assert type(back) is ZeroDivisionError
    expected = ["[1:execute]", *ENGINE_TEXT.splitlines()]
    assert back._render_traceback_() == expected
    assert not hasattr(sent, "_render_traceback_")  # given where the client rebuilds it
    again = pickle.loads(pickle.dumps(back))     # and the exception still pickles
    assert again._render_traceback_() == expected
    assert _round_trip(again)._render_traceback_() == expected


@pytest.mark.tier1
def test_an_unrebuildable_engine_exception_renders_as_remote_error():
    record = wire.record_from_exception(
        tag_exception(ValueError("bad"), 2, "apply", "engine traceback\nValueError: bad\n"))
    record.exception, record.module = None, "no_such_module"
    back = wire.exception_from_record(record)
    assert isinstance(back, RemoteError)
    assert back._render_traceback_() == ["[2:apply]", "engine traceback", "ValueError: bad"]


@pytest.mark.tier1
def test_a_composite_error_record_renders_every_engine():
    errors_ = [(ZeroDivisionError, tag_exception(ZeroDivisionError("division by zero"), k,
                                                 "execute", ENGINE_TEXT), None)
               for k in range(2)]
    back = _round_trip(CompositeError("one or more exceptions from call to method: execute",
                                      errors_))
    lines = back._render_traceback_()
    assert "[0:execute]" in lines and "[1:execute]" in lines
    assert lines.count("ZeroDivisionError: division by zero") == 2
    assert all(value._render_traceback_()[0] == f"[{k}:execute]"
               for k, value in enumerate(back.exceptions))


def plain_traceback(exc):
    """What Python itself prints for ``exc`` raised uncaught (a script, a log)."""
    import traceback
    return "".join(traceback.format_exception(exc))


@pytest.mark.tier1
def test_a_plain_python_traceback_shows_the_engine_traceback_once():
    sent = tag_exception(ZeroDivisionError("division by zero"), 1, "apply", ENGINE_TEXT)
    back = _round_trip(sent)
    text = plain_traceback(back)
    assert "[1:apply] the engine's traceback:\n" + ENGINE_TEXT.rstrip() in text
    again = _round_trip(pickle.loads(pickle.dumps(back)))   # noted once, however it travels
    assert plain_traceback(again).count('File "<ipkernel-input-4>"') == 1
    assert "the engine's traceback" not in plain_traceback(sent)   # the engine's own copy

    record = wire.record_from_exception(
        tag_exception(ValueError("bad"), 2, "apply", "engine traceback\nValueError: bad\n"))
    record.exception, record.module = None, "no_such_module"
    remote = wire.exception_from_record(record)
    assert "[2:apply] the engine's traceback:\nengine traceback\nValueError: bad" in \
        plain_traceback(remote)


@pytest.mark.tier1
def test_a_plain_python_traceback_of_a_composite_error_shows_its_engines():
    errors_ = [(ZeroDivisionError, tag_exception(ZeroDivisionError("division by zero"), k,
                                                 "execute", ENGINE_TEXT), None)
               for k in range(2)]
    sent = CompositeError("one or more exceptions from call to method: execute", errors_,
                          results=[errors_[0][1], 5, errors_[1][1]], failed=[0, 2])
    text = plain_traceback(_round_trip(sent))
    assert text.count('File "<ipkernel-input-4>"') == 2
    assert "[0:execute]\nTraceback" in text and "[1:execute]\nTraceback" in text
    assert text.count("1 of 3 engines succeeded") == 1   # in the message, not again


HAND_MADE = textwrap.dedent("""
    from ipkernel.error import CompositeError, tag_exception
    text = ('Traceback (most recent call last):\\n'
            '  File "<ipkernel-input-7>", line 1, in <module>\\n'
            '    1/0\\n'
            'ZeroDivisionError: division by zero\\n')
    elist = [(ZeroDivisionError, tag_exception(ZeroDivisionError("division by zero"), k,
                                               "execute", text), None) for k in range({n})]
    raise CompositeError("one or more exceptions from call to method: execute", elist)
""")


@pytest.mark.tier1
def test_ipython_shows_a_hand_made_composite_error_as_engine_tracebacks(tmp_path):
    out = run_ipython(HAND_MADE.format(n=2), tmp_path)
    lines = out.splitlines()
    assert "CompositeError: one or more exceptions from call to method: execute" in lines, out
    assert lines.index("[0:execute]") < lines.index("[1:execute]"), out
    assert lines.count('  File "<ipkernel-input-7>", line 1, in <module>') == 2, out
    assert "Cell In[" not in out and "Traceback (most recent call last)" in out
    assert_no_client_frames(out)
    assert len(lines) < 20, out


@pytest.mark.tier1
def test_ipython_shows_64_failed_engines_as_a_few_tracebacks_and_one_line_each(tmp_path):
    out = run_ipython(HAND_MADE.format(n=64), tmp_path)
    lines = out.splitlines()
    full = error.FULL_TRACEBACKS
    assert out.count("Traceback (most recent call last)") == full, out
    assert [f"[{k}:execute] ZeroDivisionError: division by zero" for k in range(full, 64)] == \
        [line for line in lines if line.endswith("] ZeroDivisionError: division by zero")], out
    assert "e.print_tracebacks()" in lines[-1], out
    assert len(lines) < 100, out


# --------------------------------------------------------------------------- tier 3

@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """Two engines of a LocalCluster, stopped after this module's tests."""
    from ipkernel.cluster import LocalCluster

    with LocalCluster(n=2, cluster_dir=tmp_path_factory.mktemp("cluster"), timeout=60,
                      restart=False) as running:
        yield running


def client_code(cluster, body):
    return (f"from ipkernel.client import MultiEngineClient, TaskClient\n"
            f"mec = MultiEngineClient({str(cluster.mec_furl_file)!r}, timeout=30)\n"
            + textwrap.dedent(body))


#: Runs each cell as IPython runs what is typed, marking where each one starts.
CELLS = textwrap.dedent("""
    for cell in CELLS:
        print("=== cell", flush=True)
        get_ipython().run_cell(cell)
""")


def sections(out):
    """The output of each cell run by CELLS (what came before the first is dropped)."""
    return out.split("=== cell\n")[1:]


@pytest.mark.tier3
@pytest.mark.timeout(120)
def test_ipython_shows_execute_on_two_engines_as_their_engine_tracebacks(cluster, tmp_path):
    out = run_ipython(client_code(cluster, "mec.execute('1/0')"), tmp_path)
    lines = out.splitlines()
    assert lines[0] == "CompositeError: one or more exceptions from call to method: execute", out
    assert lines.index("[0:execute]") < lines.index("[1:execute]"), out
    assert len([line for line in lines if re.fullmatch(
        r'  File "<ipkernel-input-\d+>", line 1, in <module>', line)]) == 2, out
    assert lines.count("    1/0") == 2, out
    assert lines.count("ZeroDivisionError: division by zero") == 2, out
    assert_no_client_frames(out)
    assert len(lines) < 60, out


@pytest.mark.tier3
@pytest.mark.timeout(120)
def test_ipython_shows_the_user_frames_of_apply_map_and_tasks(cluster, tmp_path):
    cells = [
        "def inner(x):\n    return 1 / x\n\ndef outer(x):\n    return inner(x)\n",
        "mec.apply(outer, (0,), targets=[1])",
        "mec.map(outer, [0, 0])",
        "mec.execute('def on_engine(x):\\n    return 1 / x\\n')",
        "mec.map('on_engine', [0, 0])",
        "from ipkernel.task import MapTask, StringTask\ntc = TaskClient("
        f"{str(cluster.tc_furl_file)!r}, timeout=30)",
        "tc.get_task_result(tc.run(MapTask(outer, (0,))), block=True)",
        "tc.get_task_result(tc.run(StringTask('1/0')), block=True).raise_exception()",
    ]
    out = run_ipython(client_code(cluster, f"CELLS = {cells!r}\n" + CELLS), tmp_path)
    parts = sections(out)
    assert len(parts) == len(cells), out
    assert_no_client_frames(out)
    apply_, map_, map_by_name = parts[1], parts[2], parts[4]
    task, string_task = parts[6], parts[7]

    def frames(text):
        return re.findall(r'^  File "[^"]+", line \d+, in (\S+)$', text, re.M)

    assert apply_.splitlines()[2] == "[1:apply]", apply_
    assert frames(apply_) == ["outer", "inner"], apply_
    assert "[0:starmap]" in map_ and "[1:starmap]" in map_, map_
    assert frames(map_) == ["outer", "inner"] * 2, map_
    assert frames(map_by_name) == ["on_engine"] * 2 and "return 1 / x" in map_by_name, \
        map_by_name
    # a task's error is raised as its own type, rebuilt from the engine's record
    task_lines = task.splitlines()
    assert re.fullmatch(r"\[\d+:apply\]", task_lines[0]), task
    assert frames(task) == ["outer", "inner"], task
    assert task_lines[-1] == "ZeroDivisionError: division by zero", task
    assert string_task.splitlines()[-1] == "ZeroDivisionError: division by zero", string_task
    assert re.fullmatch(r"\[\d+:\w+\]", string_task.splitlines()[0]), string_task
    for part in (apply_, map_, map_by_name, task, string_task):
        assert len(part.splitlines()) < 40, part


@pytest.mark.tier3
@pytest.mark.timeout(120)
def test_jupyter_shows_execute_on_two_engines_as_their_engine_tracebacks(cluster, tmp_path,
                                                                         jupyter_kernel):
    import nbclient  # (the test extra has them)
    import nbformat

    notebook = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_code_cell(client_code(cluster, "")),
        nbformat.v4.new_code_cell("mec.execute('1/0')"),
    ])
    nbclient.NotebookClient(notebook, timeout=60, startup_timeout=60, allow_errors=True,
                            kernel_name=jupyter_kernel, resources={"metadata": {"path": tmp_path}}
                            ).execute()
    (output,) = [o for o in notebook.cells[1].outputs if o["output_type"] == "error"]
    assert output["ename"] == "CompositeError"
    traceback_lines = "\n".join(output["traceback"]).splitlines()
    assert "[0:execute]" in traceback_lines and "[1:execute]" in traceback_lines
    assert traceback_lines.count("ZeroDivisionError: division by zero") == 2
    assert_no_client_frames("\n".join(traceback_lines))
    assert len(traceback_lines) < 60
