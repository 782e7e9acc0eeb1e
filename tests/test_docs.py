"""Tier 3: the documentation builds from a clean install, with no warning.

A fresh virtualenv gets the project installed from a copy of the checkout
(not editable: ``pip install '<copy>[docs]'``), and that venv's
``sphinx-build -W -n --keep-going`` builds ``docs/`` of the checkout from a
directory outside it, so autodoc imports the installed package.  The build
must succeed (every warning, nitpicky references included, is an error),
the reference must show the key API, and every public name of the public
modules must be documented somewhere.
"""
import html as htmllib
import importlib
import os
import re
import shutil
import subprocess
import sys
import zlib
from pathlib import Path

import pytest

pytestmark = pytest.mark.tier3

REPO = Path(__file__).resolve().parents[1]

#: Not copied for the install: environments, build output, caches.
IGNORED = shutil.ignore_patterns(".venv", ".git", "build", "dist", "*.egg-info", "__pycache__",
                                 "_build", ".pytest_cache")

#: Anchors the rendered reference must have: page -> object ids.
KEY_OBJECTS = {
    "api/clients.html": [
        "ipkernel.client.MultiEngineClient",
        "ipkernel.client.MultiEngineClient.execute",
        "ipkernel.client.MultiEngineClient.scatter",
        "ipkernel.client.PendingResult.get_result",
        "ipkernel.client.ResultList",
        "ipkernel.client.TaskClient.run",
        "ipkernel.client.CallTimeout",
        "ipkernel.asyncclient.get_multiengine_client",
        "ipkernel.asyncclient.get_task_client",
        "ipkernel.client.fcmultiengine.FCFullSynchronousMultiEngineClient",
        "ipkernel.client.fctask.FCTaskClient.run",
    ],
    "api/cluster.html": ["ipkernel.cluster.LocalCluster", "ipkernel.cluster.LocalCluster.stop"],
    "api/tasks.html": ["ipkernel.task.MapTask", "ipkernel.task.StringTask",
                       "ipkernel.task.TaskResult"],
    "api/interfaces.html": [
        "ipkernel.interfaces.engine.IEngineCore.execute",
        "ipkernel.interfaces.controller.IControllerCore.register_engine",
        "ipkernel.interfaces.multiengine.IMultiEngine",
        "ipkernel.interfaces.multiengine.IEngineMultiplexer.push",
        "ipkernel.interfaces.multiengine.ISynchronousMultiEngine.get_pending_deferred",
        "ipkernel.interfaces.task.ITaskController.run",
        "ipkernel.interfaces.serialized.ISerialized",
        "ipkernel.interfaces.remote.RIMultiEngine.execute",
        "ipkernel.interfaces.remote.Targets",
    ],
    "api/errors.html": ["ipkernel.error.CompositeError", "ipkernel.error.RemoteError"],
}

#: Signatures of RemoteInterface entries made from the call tables (no source of their own).
MADE_SIGNATURES = [
    "execute(lines=Code, targets=Targets, block=Block)",
    "get_properties(keys=OptionalKeys, targets=Targets, block=Block)",
    "scatter(key=Key, parts=Payload, flatten=Block, targets=Targets, block=Block)",
    "starmap(func=Payload, argtuples=Payload)",
]

#: Modules whose every public name must appear in the reference.
PUBLIC_MODULES = [
    "ipkernel.client", "ipkernel.asyncclient", "ipkernel.cluster", "ipkernel.task",
    "ipkernel.error", "ipkernel.interfaces", "ipkernel.interfaces.engine",
    "ipkernel.interfaces.controller", "ipkernel.interfaces.multiengine",
    "ipkernel.interfaces.serialized", "ipkernel.interfaces.task", "ipkernel.interfaces.remote",
]


def read_inventory(path):
    """The object names in a Sphinx ``objects.inv`` (version 2)."""
    data = Path(path).read_bytes()
    lines, rest = data.split(b"\n", 4)[:4], data.split(b"\n", 4)[4]
    assert lines[0].startswith(b"# Sphinx inventory version 2"), lines[0]
    names = set()
    for line in zlib.decompress(rest).decode("utf-8").splitlines():
        name = line.split(" ", 1)[0]
        names.add(name)
    return names


def public_names(modname):
    """``(documented name, name where it is defined)`` of each public name of a module."""
    module = importlib.import_module(modname)
    names = getattr(module, "__all__", None)
    if names is None:
        names = [n for n, v in vars(module).items() if not n.startswith("_")
                 and getattr(v, "__module__", None) == modname]
    found = []
    for name in names:
        obj = getattr(module, name)
        home = getattr(obj, "__module__", None)
        qualname = getattr(obj, "__qualname__", None) or getattr(obj, "__name__", None)
        canonical = f"{home}.{qualname}" if isinstance(home, str) and qualname else None
        found.append((f"{modname}.{name}", canonical))
    return found


def check_built_docs(html):
    """Problems with the built HTML in ``html`` (a list of messages)."""
    problems = []
    for page, ids in KEY_OBJECTS.items():
        path = html / page
        if not path.exists():
            problems.append(f"{page} was not built")
            continue
        text = path.read_text(encoding="utf-8")
        problems += [f"{page} has no {i}" for i in ids if f'id="{i}"' not in text]
    interfaces = (html / "api/interfaces.html").read_text(encoding="utf-8")
    if 'href="#ipkernel.interfaces.multiengine.IEngineMultiplexer.push"' not in interfaces:
        problems.append("IMultiEngine does not link the push method it inherits")
    # entries of RIMultiEngine and RIEngine made from their tables show their wire signatures
    shown = re.sub(r"\s+", "", htmllib.unescape(re.sub(r"<[^>]+>", "", interfaces)))
    for signature in MADE_SIGNATURES:
        if signature.replace(" ", "") not in shown:
            problems.append(f"api/interfaces.html does not show {signature}")
    for page in ("install.html", "guide.html", "client.html", "network.html"):
        if not (html / page).exists():
            problems.append(f"{page} was not built")
    inventory = read_inventory(html / "objects.inv")
    for modname in PUBLIC_MODULES:
        for name, canonical in public_names(modname):
            if name not in inventory and canonical not in inventory:
                problems.append(f"{name} is not documented")
    return problems


def run(argv, cwd, timeout, env=None):
    return subprocess.run([str(a) for a in argv], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=timeout)


@pytest.mark.timeout(600)
def test_docs_build_without_warnings_from_a_clean_install(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    source = tmp_path / "source"
    shutil.copytree(REPO, source, ignore=IGNORED)
    venv = tmp_path / "venv"
    made = run([sys.executable, "-m", "venv", venv], tmp_path, 120, env)
    assert made.returncode == 0, made.stderr
    python = venv / "bin" / "python"
    installed = run([python, "-m", "pip", "install", "-q", f"{source}[docs]"], tmp_path, 420, env)
    assert installed.returncode == 0, installed.stdout + installed.stderr

    where = run([python, "-c", "import ipkernel; print(ipkernel.__file__)"], tmp_path, 60, env)
    assert where.returncode == 0, where.stderr
    assert str(venv) in where.stdout and str(REPO) not in where.stdout, where.stdout

    html = tmp_path / "html"
    built = run([venv / "bin" / "sphinx-build", "-W", "-n", "--keep-going", "-q", "-b", "html",
                 REPO / "docs", html], tmp_path, 420, env)
    assert built.returncode == 0, (f"sphinx-build failed ({built.returncode}):\n"
                                   f"{built.stderr}\n{built.stdout[-3000:]}")
    assert not built.stderr.strip(), built.stderr
    problems = check_built_docs(html)
    assert not problems, "\n".join(problems)
