"""Tier 3: what a user installs is the wheel, and the wheel works.

The wheel is built from a copy of the working tree (so nothing in the
checkout's ``build/`` can hide a missing file), installed with its
dependencies into a fresh virtualenv (not editable), and used from a
directory outside the checkout: every module imports, a ``LocalCluster`` of
two engine processes maps, pushes and pulls an 8 MB numpy array over the
data channel, and a ``StringTask`` runs through ``client.TaskClient``.  The
same is done under every Python the package declares that this machine has.
"""
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

pytestmark = pytest.mark.tier3

REPO = Path(__file__).resolve().parents[1]

#: Not copied for the build: environments, build output, caches.
IGNORED = shutil.ignore_patterns(".venv", ".git", "build", "dist", "*.egg-info", "__pycache__",
                                 "_build", ".pytest_cache")

#: The interpreters the classifiers promise.
PYTHONS = ["python3.11", "python3.12", "python3.13"]

#: Run by the installed package, from outside the checkout.
USER_SCRIPT = textwrap.dedent("""
    import importlib, pkgutil, sys
    import numpy as np
    import ipkernel

    print("ipkernel from", ipkernel.__file__)
    def broken(name):
        raise ImportError(f"walk_packages could not import {name}")

    names = [m.name for m in pkgutil.walk_packages(ipkernel.__path__, "ipkernel.", broken)]
    for name in names:
        try:
            importlib.import_module(name)
        except ImportError as missing:  # only an optional extra, saying how to install it
            if "pip install 'ipkernel[" not in str(missing):
                raise
            print("needs an extra:", name, "-", missing)
    print("imported", len(names), "modules")
    try:
        import interfaces
    except ModuleNotFoundError:
        print("no top-level interfaces")
    else:
        print("top-level interfaces at", interfaces.__file__)

    from importlib.resources import files
    static = files("ipkernel.dashboard") / "static"
    print("dashboard files", all((static / name).is_file() for name in
                                 ["index.html", "dashboard.js", "dashboard.css", "uPlot.iife.min.js"]))

    from ipkernel import client
    from ipkernel.cluster import LocalCluster
    from ipkernel.task import StringTask

    with LocalCluster(n=2) as cluster:
        mec = cluster.multiengine_client()
        print("map", mec.map(lambda x: x * x, range(8)))
        a = np.arange(1_000_000, dtype=float)
        mec.push({"a": a})
        back = mec.pull("a")
        print("pulled", len(back), all(np.array_equal(b, a) for b in back),
              sum(b.nbytes for b in back))
        data = mec._fc_now().data  # the client's data channel peer, None without one
        print("data channel received", data is not None and data.bytes_received >= 2 * a.nbytes)
        tc = client.TaskClient(str(cluster.tc_furl_file))
        taskid = tc.run(StringTask("b = a * 2", push={"a": 21}, pull="b"))
        print("task", tc.get_task_result(taskid, block=True).ns.b)
    print("done")
""")


def find_python(name):
    """A working interpreter called ``name`` (on PATH, or one pyenv keeps), or None.

    A pyenv shim is on PATH for every version pyenv has, but only runs for
    the versions selected; the versions' own binaries always run.
    """
    version = name.removeprefix("python")
    root = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv"))
    candidates = [shutil.which(name)] + sorted(root.glob(f"versions/{version}*/bin/{name}"))
    for candidate in filter(None, candidates):
        try:
            answer = subprocess.run([str(candidate), "-c", "import sys, venv; print(sys.version)"],
                                    capture_output=True, text=True, timeout=30)
        except OSError:
            continue
        if answer.returncode == 0 and answer.stdout.startswith(version + "."):
            return str(candidate)
    return None


def run(argv, cwd, timeout, env):
    return subprocess.run([str(a) for a in argv], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=timeout)


def clean_env():
    """This environment without the test venv's own settings."""
    return {k: v for k, v in os.environ.items()
            if k not in ("PYTHONPATH", "VIRTUAL_ENV", "IPKERNEL_DIR")}


def package_name(folder):
    """The installed name of a package folder of the checkout."""
    parts = folder.relative_to(REPO).parts
    if parts[0] == "interfaces":
        parts = ("ipkernel",) + parts
    return ".".join(parts)


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
    """The wheel built from a copy of the working tree."""
    where = tmp_path_factory.mktemp("wheel")
    source = where / "source"
    shutil.copytree(REPO, source, ignore=IGNORED)
    built = run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", where / "dist",
                 source], where, 300, clean_env())
    assert built.returncode == 0, built.stdout + built.stderr
    (found,) = (where / "dist").glob("ipkernel-*.whl")
    return found


@pytest.mark.timeout(900)  # the first test to use the fixture also builds the wheel
def test_the_wheel_holds_every_package_and_nothing_else(wheel):
    import zipfile

    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        (metadata,) = [n for n in names if n.endswith(".dist-info/METADATA")]
        headers = archive.read(metadata).decode().split("\n\n", 1)[0].splitlines()
    top = {n.split("/", 1)[0] for n in names}
    assert top == {"ipkernel", wheel.name.split("-py3")[0] + ".dist-info"}, top
    packages = {package_name(p.parent) for root in ("ipkernel", "interfaces")
                for p in (REPO / root).rglob("__init__.py")}
    in_wheel = {n.rsplit("/", 1)[0].replace("/", ".") for n in names
                if n.endswith("/__init__.py")}
    assert in_wheel == packages, (sorted(packages - in_wheel), sorted(in_wheel - packages))
    assert any(n.endswith(".dist-info/licenses/LICENSE") for n in names), names
    # PEP 639: the SPDX expression, and no License classifier beside it
    assert "License-Expression: BSD-3-Clause" in headers, headers
    assert "License-File: LICENSE" in headers, headers
    assert "Requires-Python: >=3.11" in headers, headers
    classifiers = {h.split(": ", 1)[1] for h in headers if h.startswith("Classifier: ")}
    assert {f"Programming Language :: Python :: {v}" for v in ("3.11", "3.12", "3.13")} <= classifiers
    assert not any(c.startswith("License ::") for c in classifiers), classifiers


@pytest.mark.timeout(900)
@pytest.mark.parametrize("python", PYTHONS)
def test_the_installed_wheel_runs_a_cluster(wheel, python, tmp_path):
    interpreter = find_python(python)
    if interpreter is None:
        pytest.skip(f"{python} is not on this machine (neither on PATH nor in pyenv)")
    env = clean_env()
    env["IPKERNEL_DIR"] = str(tmp_path / "ipkernel-dir")
    venv = tmp_path / "venv"
    made = run([interpreter, "-m", "venv", venv], tmp_path, 120, env)
    assert made.returncode == 0, made.stderr
    venv_python = venv / "bin" / "python"
    installed = run([venv_python, "-m", "pip", "install", "-q", f"{wheel}[numpy]"],
                    tmp_path, 600, env)
    assert installed.returncode == 0, installed.stdout + installed.stderr

    script = tmp_path / "user_script.py"
    script.write_text(USER_SCRIPT)
    used = run([venv_python, script], tmp_path, 240, env)
    assert used.returncode == 0, f"stdout:\n{used.stdout}\nstderr:\n{used.stderr}"
    lines = used.stdout.splitlines()
    assert lines[0].startswith(f"ipkernel from {venv}/lib/"), lines[0]
    extras = [line for line in lines if line.startswith("needs an extra: ")]
    assert [line.split()[3] for line in extras] == ["ipkernel.magic"], extras  # IPython absent
    imported = lines[1 + len(extras)]
    assert imported.startswith("imported ") and int(imported.split()[1]) > 50, imported
    assert "no top-level interfaces" in lines, lines
    assert "dashboard files True" in lines, lines
    assert "map [0, 1, 4, 9, 16, 25, 36, 49]" in lines, lines
    assert "pulled 2 True 16000000" in lines, lines
    assert "data channel received True" in lines, lines
    assert "task 42" in lines, lines
    assert lines[-1] == "done", lines
