"""Tier 3: a real ipcontroller and ipengines, used through the async client."""
import importlib
import os
import stat
import sys
import textwrap
import time
from pathlib import Path

import pytest
import pytest_twisted

from ipkernel import asyncclient
from ipkernel.error import CompositeError, ControllerError

pytestmark = [pytest.mark.tier3, pytest.mark.timeout(120)]


@pytest_twisted.ensureDeferred
async def test_execute_push_pull_scatter_gather_map(cluster):
    mec = await cluster.start()
    assert await mec.get_ids() == [0, 1]

    results = await mec.execute("a = id * 10\nprint('hello from', id)")
    assert [r["id"] for r in results] == [0, 1]
    assert [r["stdout"] for r in results] == ["hello from 0\n", "hello from 1\n"]

    await mec.push({"b": [1, 2, 3]})
    assert await mec.pull(("a", "b")) == [[0, [1, 2, 3]], [10, [1, 2, 3]]]
    assert await mec.pull("a", targets=1) == [10]

    await mec.scatter("x", list(range(10)))
    assert await mec.pull("x") == [[0, 1, 2, 3, 4], [5, 6, 7, 8, 9]]
    assert await mec.gather("x") == list(range(10))

    assert await mec.map(lambda v: v * v, range(9)) == [v * v for v in range(9)]
    assert await mec.apply(lambda y: y + a, (1,)) == [1, 11]  # noqa: F821 - engine name

    with pytest.raises(CompositeError) as info:
        await mec.execute("1/0", targets=1)
    assert isinstance(info.value.exceptions[0], ZeroDivisionError)


@pytest_twisted.ensureDeferred
async def test_controller_never_unpickles_user_data(cluster, tmp_path):
    secret_dir = tmp_path / "engines_only"
    secret_dir.mkdir()
    (secret_dir / "secretmod.py").write_text(textwrap.dedent("""
        class Secret:
            def __init__(self, value):
                self.value = value
    """))
    # Premise: the controller's environment cannot import the module ...
    probe = cluster.spawn("probe", "secretmod", [])
    assert await probe.wait() != 0
    assert "No module named secretmod" in probe.output

    mec = await cluster.start(engine_env=cluster.child_env(pythonpath=[secret_dir]))
    sys.path.insert(0, str(secret_dir))
    try:
        secretmod = importlib.import_module("secretmod")
        await mec.push({"s": secretmod.Secret(42)})
        await mec.execute("t = (type(s).__module__, s.value + 1)")
        assert await mec.pull("t") == [("secretmod", 43), ("secretmod", 43)]
        back = await mec.pull("s")
        assert [type(v) for v in back] == [secretmod.Secret, secretmod.Secret]
        assert [v.value for v in back] == [42, 42]
        # ... and errors of that type cross it too
        with pytest.raises(CompositeError):
            await mec.execute("import secretmod\nraise ValueError(secretmod.Secret(1))", targets=0)
    finally:
        sys.path.remove(str(secret_dir))
        sys.modules.pop("secretmod", None)
    assert "Traceback" not in cluster.controller.output


@pytest_twisted.ensureDeferred
async def test_controller_files_pid_and_permissions(cluster):
    await cluster.start(n_engines=0)
    security = cluster.dir / "security"
    pid_file = cluster.dir / "pid" / "ipcontroller.pid"

    assert int(pid_file.read_text()) == cluster.controller.pid
    assert stat.S_IMODE(security.stat().st_mode) == 0o700
    private = ["ipcontroller-engine.furl", "ipcontroller-mec.furl", "ipcontroller-client.pem",
               "ipcontroller-engine.pem", "ipcontroller-client.port", "ipcontroller-engine.port"]
    for name in private:
        assert stat.S_IMODE((security / name).stat().st_mode) == 0o600, name
    ready = [line for line in cluster.controller.output.splitlines() if "ipcontroller ready:" in line]
    assert len(ready) == 1 and cluster.engine_furl_file in ready[0]

    # a second controller on the same directory refuses to start and leaves the files alone
    furl = Path(cluster.mec_furl_file).read_text()
    second = cluster.spawn("second", "ipkernel.controller", ["--cluster-dir", str(cluster.dir)])
    assert await second.wait() == 1
    assert f"pid {cluster.controller.pid}" in second.output
    assert Path(cluster.mec_furl_file).read_text() == furl
    assert pid_file.exists()

    cluster.controller.signal("TERM")
    assert await cluster.controller.wait() == 0
    assert not pid_file.exists()


@pytest_twisted.ensureDeferred
async def test_sigint_then_restart_without_reuse_writes_new_furls(cluster):
    await cluster.start(n_engines=0)
    old = Path(cluster.mec_furl_file).read_text()
    cluster.controller.signal("INT")
    assert await cluster.controller.wait() == 0
    mec = await cluster.start(n_engines=0, controller_args=["--client-location", "localhost"])
    new = Path(cluster.mec_furl_file).read_text().strip()
    assert new != old.strip()
    assert "@tcp:localhost:" in new  # clients are told to dial the given location
    assert mec.furl == new


@pytest_twisted.ensureDeferred
async def test_kill_controller_stops_controller_and_engines(cluster, tmp_path):
    logfile = tmp_path / "controller.log"
    mec = await cluster.start(controller_args=["--logfile", str(logfile)])
    await mec.kill(controller=True)
    for proc in [cluster.controller, *cluster.engines]:
        assert await proc.wait() == 0, proc.name
    assert not (cluster.dir / "pid" / "ipcontroller.pid").exists()
    log = logfile.read_text()
    assert "ipcontroller ready:" in log and "ipcontroller stopped" in log
    assert "ipcontroller ready" not in cluster.controller.output  # it went to the file


@pytest_twisted.ensureDeferred
async def test_wrong_furl_file_fails_promptly_and_clearly(tmp_path, client_tub):
    missing = tmp_path / "nowhere" / "ipcontroller-mec.furl"
    started = time.monotonic()
    with pytest.raises(ControllerError) as info:
        await asyncclient.get_multiengine_client(str(missing), tub=client_tub)
    assert time.monotonic() - started < 2
    assert str(missing) in str(info.value)
    assert "does not exist" in str(info.value)


@pytest_twisted.ensureDeferred
async def test_stale_furl_file_fails_promptly_and_clearly(cluster, client_tub):
    await cluster.start(n_engines=0)
    cluster.controller.signal("TERM")
    assert await cluster.controller.wait() == 0
    started = time.monotonic()
    with pytest.raises(ControllerError) as info:
        await asyncclient.get_multiengine_client(cluster.mec_furl_file, tub=client_tub)
    assert time.monotonic() - started < 5
    assert cluster.mec_furl_file in str(info.value)
    assert "ipcontroller running" in str(info.value)


def test_console_scripts_are_installed():
    from importlib.metadata import entry_points
    scripts = {ep.name: ep.value for ep in entry_points(group="console_scripts")}
    assert scripts.get("ipcontroller") == "ipkernel.controller.app:run"
    assert scripts.get("ipengine") == "ipkernel.engine.app:run"
    bindir = Path(sys.executable).parent
    assert os.access(bindir / "ipcontroller", os.X_OK)
    assert os.access(bindir / "ipengine", os.X_OK)
