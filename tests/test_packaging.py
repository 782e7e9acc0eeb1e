"""Tier 1: packaging -- interfaces/ is only ever ipkernel.interfaces; importing ipkernel
registers the adapters; setup.py's package discovery installs every package on disk (so a
new subpackage can never be left out of a wheel again; tests/test_wheel.py checks the wheel
itself)."""
import runpy
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

pytestmark = pytest.mark.tier1

REPO_ROOT = str(Path(__file__).resolve().parents[1])


def _run_python(code, cwd="/tmp"):
    """Run ``code`` in a fresh interpreter of this virtualenv, started in ``cwd``."""
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], cwd=cwd,
                          capture_output=True, text=True, timeout=60)


def test_import_ipkernel_does_not_create_top_level_interfaces():
    import ipkernel  # noqa: F401
    import ipkernel.interfaces
    assert "interfaces" not in sys.modules
    assert ipkernel.interfaces.__name__ == "ipkernel.interfaces"


def test_interfaces_importable_under_ipkernel():
    from ipkernel.interfaces import IEngineBase, IEngineQueued, IMultiEngine
    from ipkernel.interfaces.engine import IEngineBase as same
    assert same is IEngineBase
    assert IEngineQueued.extends(IEngineBase)
    assert IMultiEngine.__module__ == "ipkernel.interfaces.multiengine"


def test_fresh_interpreter_only_sees_ipkernel_interfaces():
    result = _run_python("""
        import sys
        import ipkernel
        import ipkernel.interfaces
        assert 'interfaces' not in sys.modules, sorted(sys.modules)
        print(ipkernel.interfaces.IEngineBase.__module__)
        try:
            import interfaces
        except ModuleNotFoundError as exc:
            print('top-level:', type(exc).__name__, exc.name)
        else:
            print('top-level: imported from', interfaces.__file__)
    """)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "ipkernel.interfaces.engine"
    assert lines[1] == "top-level: ModuleNotFoundError interfaces"


def test_importing_ipkernel_from_the_repository_root_does_not_load_top_level_interfaces():
    # ``python -c`` puts the cwd (here the repository root, which holds interfaces/) first on
    # sys.path; ipkernel must still reach its contracts only as ipkernel.interfaces.
    result = _run_python("""
        import sys
        import ipkernel
        import ipkernel.interfaces
        print('interfaces' in sys.modules)
    """, cwd=REPO_ROOT)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "False"


def test_import_ipkernel_registers_the_adapters_in_a_fresh_interpreter():
    result = _run_python("""
        import ipkernel
        from ipkernel.interfaces import (IEngineQueued, IFullMultiEngine, IMultiEngine,
                                         ISynchronousMultiEngine)
        controller = ipkernel.controller.ControllerService()
        me = IMultiEngine(controller)
        print(type(me).__name__)
        print(type(IFullMultiEngine(controller)).__name__)
        print(type(ISynchronousMultiEngine(me)).__name__)
        print(type(IEngineQueued(ipkernel.engine.EngineService())).__name__)
    """)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ["MultiEngine", "MultiEngine",
                                          "SynchronousMultiEngine", "QueuedEngine"]


def test_adapters_in_this_process():
    from ipkernel.controller import ControllerService, MultiEngine
    from ipkernel.engine import EngineService, QueuedEngine
    from ipkernel.interfaces import IEngineQueued, IMultiEngine
    assert isinstance(IMultiEngine(ControllerService()), MultiEngine)
    engine = EngineService()
    queued = IEngineQueued(engine)
    assert isinstance(queued, QueuedEngine)
    assert IEngineQueued(queued) is queued


def _setup_arguments(monkeypatch):
    """The keyword arguments setup.py passes to ``setuptools.setup``, run as a build runs
    it (from the repository root), without building anything."""
    setuptools = pytest.importorskip("setuptools", reason="setuptools is needed to read setup.py")
    captured = {}
    monkeypatch.setattr(setuptools, "setup", lambda **kwargs: captured.update(kwargs))
    monkeypatch.chdir(REPO_ROOT)
    runpy.run_path(str(Path(REPO_ROOT) / "setup.py"), run_name="__main__")
    return captured


def _packages_on_disk():
    """Installed name of every folder with an ``__init__.py`` under ipkernel/ and interfaces/."""
    root = Path(REPO_ROOT)
    names = set()
    for top, installed_as in (("ipkernel", ("ipkernel",)), ("interfaces", ("ipkernel", "interfaces"))):
        for init in (root / top).rglob("__init__.py"):
            names.add(".".join(installed_as + init.parent.relative_to(root / top).parts))
    return names


def test_setup_discovers_every_package_on_disk(monkeypatch):
    arguments = _setup_arguments(monkeypatch)
    packages = set(arguments["packages"])
    on_disk = _packages_on_disk()
    assert {"ipkernel", "ipkernel.lane", "ipkernel.datachannel", "ipkernel.interfaces"} <= on_disk
    assert packages == on_disk, (sorted(on_disk - packages), sorted(packages - on_disk))
    # interfaces/ is only ever ipkernel.interfaces; tests/ and bench/ are not installed
    assert all(name == "ipkernel" or name.startswith("ipkernel.") for name in packages), packages
    assert arguments["package_dir"] == {"ipkernel.interfaces": "interfaces"}


def test_every_folder_of_modules_under_ipkernel_is_a_regular_package():
    # Discovery finds folders with an __init__.py: a folder of modules without one
    # would be an implicit namespace package that no wheel installs.
    root = Path(REPO_ROOT)
    missing = sorted(str(folder.relative_to(root))
                     for top in ("ipkernel", "interfaces")
                     for folder in [root / top, *(root / top).rglob("*")]
                     if folder.is_dir() and folder.name != "__pycache__"
                     and any(folder.glob("*.py")) and not (folder / "__init__.py").exists())
    assert not missing, f"folders of modules without an __init__.py: {missing}"

