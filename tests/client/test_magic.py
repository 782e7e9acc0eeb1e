"""Tier 3: the IPython extension (issue 16): %load_ext ipkernel, %px,
%%px, %autopx, %result/%pxresult, through a real IPython shell (an
InteractiveShell running cell after cell, in a program of its own) against
a real local cluster."""
import re
import subprocess
import sys

import pytest

from ipkernel.cluster import LocalCluster

pytestmark = [pytest.mark.tier3, pytest.mark.timeout(180)]

SHELL = """
import sys
from IPython.core.interactiveshell import InteractiveShell
shell = InteractiveShell.instance(colors="nocolor")
cells = sys.stdin.read().split("\\n#---\\n")
for cell in cells:
    print(">>>", cell.splitlines()[0] if cell else "", flush=True)
    result = shell.run_cell(cell)
    if result.error_in_exec is not None:
        print("!!! raised", type(result.error_in_exec).__name__, flush=True)
"""


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    with LocalCluster(n=2, cluster_dir=tmp_path_factory.mktemp("magic"), timeout=60) as c:
        yield c


def run_cells(cluster, *cells, activate=True):
    """Run ``cells`` in one IPython shell connected to ``cluster``; its output
    as a dict: the first line of each cell -> the lines that cell printed."""
    setup = [f"from ipkernel.client import MultiEngineClient\n"
             f"mec = MultiEngineClient({str(cluster.mec_furl_file)!r}, timeout=60)",
             "%load_ext ipkernel"] + (["mec.activate()"] if activate else [])
    done = subprocess.run([sys.executable, "-c", SHELL], input="\n#---\n".join(setup + list(cells)),
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    shown, current = {}, None
    for line in (done.stdout + done.stderr).splitlines():
        if line.startswith(">>> "):
            current = shown.setdefault(line[4:], [])
        elif current is not None:
            current.append(line)
    return shown


def test_px_runs_on_the_engines_and_shows_output_and_values(cluster):
    shown = run_cells(cluster, "%px import os", "%px print('pid', os.getpid() > 0)",
                      "%px 6 * 7", "%px --targets 1 id", "%px -t 0,1 id + 10",
                      "x = 5", "%px x = 1", "print('local x is', x)")
    assert sorted(shown["%px print('pid', os.getpid() > 0)"]) == ["[stdout:0] pid True",
                                                                  "[stdout:1] pid True"]
    values = shown["%px 6 * 7"]
    assert [v.split(":")[0] for v in values] == ["Out[0", "Out[1"]
    # k: the engine's command number (its third command when the cluster is new)
    assert all(re.fullmatch(r"Out\[\d:\d+\]: 42", v) for v in values), values
    assert [v.split(": ")[1] for v in shown["%px --targets 1 id"]] == ["1"]
    assert [v.split(": ")[1] for v in shown["%px -t 0,1 id + 10"]] == ["10", "11"]
    assert shown["print('local x is', x)"] == ["local x is 5"]   # %px ran remotely only


def test_cell_px_and_result(cluster):
    shown = run_cells(cluster, "%%px --targets 0\ny = 20\nprint('cell ran')\ny * 2",
                      "%result", "%pxresult", "pending = %px --noblock id",
                      "print(type(pending).__name__, [r['id'] for r in pending.get()])")
    assert shown["%%px --targets 0"][0] == "[stdout:0] cell ran"
    assert shown["%%px --targets 0"][1].endswith("]: 40")
    assert shown["%result"] == shown["%pxresult"] == shown["%%px --targets 0"]
    assert shown["print(type(pending).__name__, [r['id'] for r in pending.get()])"] == \
        ["PendingResult [0, 1]"]


def test_autopx_runs_every_following_cell_remotely_until_toggled(cluster):
    shown = run_cells(cluster, "%autopx", "z = id * 100", "z",
                      "for k in range(2):\n    print('k', k)", "%autopx", "print('here')",
                      "z")
    assert "every cell runs on the engines" in shown["%autopx"][0]
    assert [v.split(": ")[1] for v in shown["z"][:2]] == ["0", "100"]
    assert sorted(shown["for k in range(2):"]) == ["[stdout:0] k 0", "[stdout:0] k 1",
                                                   "[stdout:1] k 0", "[stdout:1] k 1"]
    assert shown["print('here')"] == ["here"]
    # z is not defined here: the last cell ran locally and failed
    assert shown["z"][-1] == "!!! raised NameError"


def test_a_remote_error_in_px_shows_the_engine_tracebacks(cluster):
    shown = run_cells(cluster, "%px 1/0")
    text = "\n".join(shown["%px 1/0"])
    assert "[0:execute]" in text and "[1:execute]" in text
    assert text.count("ZeroDivisionError: division by zero") == 2
    assert shown["%px 1/0"][-1] == "!!! raised CompositeError"


def test_without_activate_the_magics_use_the_default_cluster(cluster, tmp_path):
    # the default cluster directory ($IPKERNEL_DIR) is the cluster's own here
    import os
    env = dict(os.environ, IPKERNEL_DIR=str(cluster.cluster_dir))
    done = subprocess.run([sys.executable, "-c", SHELL], input="%load_ext ipkernel\n#---\n%px id",
                          capture_output=True, text=True, timeout=120, env=env)
    assert done.returncode == 0, done.stderr
    assert "Out[0:" in done.stdout and "Out[1:" in done.stdout, done.stdout + done.stderr


def test_an_activated_view_runs_px_on_its_engines(cluster):
    shown = run_cells(cluster, "mec[1].activate()", "%px id", "%px -t 0 id", activate=False)
    assert [v.split(": ")[1] for v in shown["%px id"]] == ["1"]
    assert [v.split(": ")[1] for v in shown["%px -t 0 id"]] == ["0"]
