"""LocalCluster's forked engines: the engine zygote and ForkedEngineLauncher.

The reactor refresh is checked in a subprocess that forks (tier 1); the
rest starts real clusters (tier 3).
"""
import logging
import os
import re
import signal
import subprocess
import sys
import textwrap

import pytest
import pytest_twisted
from foolscap.eventual import flushEventualQueue
from twisted.internet import reactor
from twisted.internet.task import deferLater

from ipkernel import asyncclient, fcutil
from ipkernel.cluster import LaunchError, LocalCluster, pidfiles
from ipkernel.cluster import local
from ipkernel.cluster.launcher import (LOST_STATUS, EngineLauncher, ForkedControllerLauncher,
                                       ForkedEngineLauncher, ZygoteLauncher)
from ipkernel.clusterdir import ClusterDir
from ipkernel.error import CompositeError
from ipkernel.pids import process_alive

TIMEOUT = 60
POLL = 0.05

#: Forks after the imports; the child refreshes the reactor and runs it,
#: then the parent checks that its own reactor was not disturbed.
REFRESH = textwrap.dedent("""
    import os, sys, threading
    from ipkernel.engine.zygote import refresh_problem, refresh_reactor
    from twisted.internet import reactor
    from twisted.internet.selectreactor import SelectReactor

    assert refresh_problem(reactor) is None, refresh_problem(reactor)
    other = SelectReactor()
    assert "not the epoll reactor" in refresh_problem(other)
    other.waker.connectionLost(None)
    busy = type(reactor)()

    class Reader:
        def __init__(self, fd):
            self.fd = fd
        def fileno(self):
            return self.fd
    pipe_r, pipe_w = os.pipe()
    busy.addReader(Reader(pipe_r))
    assert "watches file descriptors besides its waker" in refresh_problem(busy)

    def run_briefly(r):
        # the waker must work: a thread's callFromThread stops the reactor
        r.callWhenRunning(lambda: threading.Thread(
            target=r.callFromThread, args=(r.stop,)).start())
        timer = r.callLater(10, lambda: (print("no wake-up"), os._exit(5)))
        r.run(installSignalHandlers=False)
        timer.cancel()

    old_poller, old_waker = reactor._poller, reactor.waker
    pid = os.fork()
    if pid == 0:
        try:
            refresh_reactor(reactor)
            assert reactor._poller is not old_poller and reactor.waker is not old_waker
            assert old_poller.closed and old_waker.i is None
            assert set(reactor._selectables.values()) == {reactor.waker}
            assert reactor._internalReaders == {reactor.waker}
            # a descriptor registered now must not reach the parent's epoll
            r, w = os.pipe()
            os.write(w, b"x")
            reactor._poller.register(r, 1)
            run_briefly(reactor)
            os._exit(0)
        except BaseException as exc:
            print("child:", repr(exc), flush=True)
            os._exit(3)
    status = os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])
    assert status == 0, status
    assert not old_poller.closed and reactor._poller is old_poller
    assert old_poller.poll(0) == [], old_poller.poll(0)   # nothing from the child
    run_briefly(reactor)
    print("ok")
""")


def test_refresh_reactor_gives_a_forked_child_its_own_epoll_and_waker():
    done = subprocess.run([sys.executable, "-c", REFRESH], capture_output=True, text=True,
                          timeout=TIMEOUT, stdin=subprocess.DEVNULL)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.strip() == "ok"


# -- tier 3 -----------------------------------------------------------------------------

def pids_of(cluster):
    """The pids of the cluster's processes (those that were started)."""
    zygote = [cluster.zygote.pid] if cluster.zygote is not None else []
    pids = [cluster.controller.pid, *zygote, *(e.pid for e in cluster.engines)]
    return [pid for pid in pids if pid is not None]


async def connect(cluster, tub):
    tub.startService()
    return await asyncclient.get_multiengine_client(str(cluster.mec_furl_file), tub=tub)


async def close(tub):
    await tub.stopService()
    await flushEventualQueue()


def within(d, seconds):
    return d.addTimeout(seconds, reactor)


def engine_id(launcher):
    """The id the engine's current run registered as (from its log)."""
    return int(re.search(r"registered as engine (\d+)", launcher.log_text()).group(1))


async def wait_for_ids(mec, check, what, timeout=TIMEOUT):
    """Poll the controller's engine ids until ``check(ids)``; return them."""
    deadline = reactor.seconds() + timeout
    while True:
        ids = await within(mec.get_ids(), 30)
        if check(ids):
            return ids
        assert reactor.seconds() < deadline, f"timed out waiting for {what} (ids {ids})"
        await deferLater(reactor, POLL, lambda: None)


@pytest.mark.tier3
@pytest.mark.timeout(120)
@pytest_twisted.ensureDeferred
async def test_forked_engines_register_work_and_are_separate_processes(reaper):
    with LocalCluster(n=2, timeout=TIMEOUT) as cluster:
        reaper.add_pids(*pids_of(cluster))
        zygote = cluster.zygote
        assert zygote is not None and zygote.is_alive() and zygote.can_fork
        assert all(isinstance(e, ForkedEngineLauncher) and e.forked for e in cluster.engines)
        pids = [e.pid for e in cluster.engines]
        assert len(set(pids)) == 2 and all(process_alive(p) for p in pids)
        assert all(e.is_alive() and e.exit_code is None for e in cluster.engines)
        listed = {r.name: r.pid for r in pidfiles.scan(cluster.cluster_dir / "pid") if r.alive}
        assert listed["ipengine-0"] == pids[0] and listed["ipengine-1"] == pids[1]
        assert "ipengine-zygote" not in listed
        # the controller too is a forked child of the zygote, a process of its own
        controller = cluster.controller
        assert isinstance(controller, ForkedControllerLauncher) and controller.forked
        assert listed["ipcontroller"] == controller.pid not in (*pids, zygote.pid)
        assert f"forked ipcontroller#1 as pid {controller.pid}" in zygote.log_text()
        assert "ipcontroller ready" in controller.log_text()
        tub = fcutil.make_tub()
        try:
            mec = await connect(cluster, tub)
            assert await mec.get_ids() == [0, 1]
            facts = await mec.apply(lambda: (__import__("os").getpid(),
                                             __import__("os").getppid(),
                                             __import__("os").getsid(0),
                                             __import__("random").random(),
                                             __import__("sys").argv[0]))
            assert sorted(f[0] for f in facts) == sorted(pids)
            assert {f[1] for f in facts} == {zygote.pid}   # children of the zygote
            assert all(f[2] == f[0] for f in facts)       # each in its own session
            assert facts[0][3] != facts[1][3]             # random was reseeded
            assert {os.path.basename(f[4]) for f in facts} == {"__main__.py"}
            await mec.execute("y = 6 * 7")
            assert await mec.pull("y") == [42, 42]
            assert await mec.map(lambda x: x * x, range(8)) == [x * x for x in range(8)]
        finally:
            await close(tub)
    assert reaper.all_gone(pids_of(cluster), timeout=0)
    assert all(e.exit_code == 0 for e in cluster.engines)   # stopped politely
    assert cluster.controller.exit_code == 0
    assert not cluster.zygote.is_alive()


@pytest.mark.tier3
@pytest.mark.timeout(120)
@pytest_twisted.ensureDeferred
async def test_restart_of_the_forked_controller(reaper, tmp_path):
    # with -r the engines come back to the new controller on their own
    with LocalCluster(n=1, timeout=TIMEOUT, cluster_dir=reaper.add_cluster_dir(tmp_path / "c"),
                      controller_args=["-r"]) as cluster:
        reaper.add_pids(*pids_of(cluster))
        controller, zygote = cluster.controller, cluster.zygote
        old = controller.pid
        new = controller.restart(timeout=10)
        reaper.add_pids(new)
        assert new != old and not process_alive(old) and controller.forked
        assert zygote.log_text().count("forked ipcontroller#") == 2 and zygote.exit_status(old) == 0
        controller.wait_ready(TIMEOUT)
        tub = fcutil.make_tub()
        try:
            mec = await connect(cluster, tub)
            await wait_for_ids(mec, lambda ids: ids == [0], "the engine to register again")
            assert await within(mec.apply(os.getppid), 30) == [zygote.pid]
        finally:
            await close(tub)
    assert reaper.all_gone(pids_of(cluster), timeout=0)
    assert cluster.controller.exit_code == 0


@pytest.mark.tier3
@pytest.mark.timeout(120)
@pytest_twisted.ensureDeferred
async def test_interrupt_stop_and_restart_of_one_forked_engine(reaper, tmp_path):
    with LocalCluster(n=2, timeout=TIMEOUT) as cluster:
        reaper.add_pids(*pids_of(cluster))
        first, second = cluster.engines
        tub = fcutil.make_tub()
        try:
            mec = await connect(cluster, tub)
            first_id, second_id = engine_id(first), engine_id(second)
            # interrupt: running code gets KeyboardInterrupt, the engine stays
            marker = tmp_path / "running"
            busy = await mec.execute(f"import time\nopen({str(marker)!r}, 'w').close()\n"
                                     f"while True: time.sleep(0.01)", targets=first_id,
                                     block=False)
            reaper.wait_for(marker.exists, "the loop to start", TIMEOUT)
            assert first.interrupt()
            with pytest.raises(CompositeError) as info:
                await within(mec.get_pending_deferred(busy, block=True), 30)
            assert [type(e) for e in info.value.exceptions] == [KeyboardInterrupt]
            assert first.is_alive()

            # stop engine 1 alone: polite, its pid file goes, engine 0 stays
            old = second.pid
            assert second.shutdown(timeout=10) == 0
            assert not second.is_alive() and not process_alive(old)
            assert not cluster.cluster_dir.joinpath("pid", "ipengine-1.pid").exists()
            assert first.is_alive()
            await wait_for_ids(mec, lambda ids: second_id not in ids, "engine 1 to leave")

            # restart engine 0: a new forked process that registers again
            old = first.pid
            new = first.restart(timeout=10)
            reaper.add_pids(new)
            assert new != old and not process_alive(old) and first.forked
            first.wait_ready(TIMEOUT)
            assert first.log_text().count("ipengine ready") == 1
            new_id = engine_id(first)
            await wait_for_ids(mec, lambda ids: new_id in ids, "the restarted engine")
            assert await within(mec.apply(os.getpid, targets=new_id), 30) == [new]
        finally:
            await close(tub)
    assert reaper.all_gone(pids_of(cluster), timeout=0)


@pytest.mark.tier3
@pytest.mark.timeout(120)
def test_forked_engine_that_fails_early_gives_the_log_tail(reaper, tmp_path):
    cluster = LocalCluster(n=1, engine_args=["--startup-script", str(tmp_path / "missing.py")],
                           timeout=TIMEOUT)
    with pytest.raises(LaunchError) as info:
        cluster.start()
    reaper.add_pids(*pids_of(cluster))
    message = str(info.value)
    assert message.startswith("ipengine-0 exited with status 1 before it was ready")
    assert "cannot read the startup script" in message
    assert cluster.engines[0].forked
    assert reaper.all_gone(pids_of(cluster), timeout=0)


@pytest.mark.tier3
@pytest.mark.timeout(120)
def test_a_dead_zygote_is_reported_and_its_engines_still_controlled(reaper):
    with LocalCluster(n=1, timeout=TIMEOUT) as cluster:
        reaper.add_pids(*pids_of(cluster))
        engine, zygote = cluster.engines[0], cluster.zygote
        zygote.kill()
        assert zygote.exit_code == -signal.SIGKILL
        # the engine lives on; it is still watched and stopped
        assert engine.is_alive() and engine.exit_code is None
        assert engine.shutdown(timeout=10) == LOST_STATUS   # nobody could report it
        assert not process_alive(engine.pid)
        with pytest.raises(LaunchError, match=r"^ipengine-zygote \(which forks the engines\) "
                                              r"exited with status -9"):
            engine.start()
    assert reaper.all_gone(pids_of(cluster), timeout=0)


@pytest.mark.tier3
@pytest.mark.timeout(120)
@pytest_twisted.ensureDeferred
async def test_spawn_starts_engines_as_new_processes(reaper):
    with pytest.raises(ValueError, match="engine_start"):
        LocalCluster(n=1, engine_start="clone")
    with LocalCluster(n=1, timeout=TIMEOUT, engine_start="spawn") as cluster:
        reaper.add_pids(*pids_of(cluster))
        assert cluster.zygote is None
        engine = cluster.engines[0]
        assert type(engine) is EngineLauncher and isinstance(engine.process, subprocess.Popen)
        tub = fcutil.make_tub()
        try:
            mec = await connect(cluster, tub)
            assert await within(mec.apply(os.getppid), 30) == [os.getpid()]
        finally:
            await close(tub)
    assert reaper.all_gone(pids_of(cluster), timeout=0)


#: A zygote whose reactor is one it cannot refresh (the select reactor).
SELECT_REACTOR_ZYGOTE = ("from twisted.internet import selectreactor; selectreactor.install()\n"
                         "import sys; from ipkernel.engine.zygote import main\n"
                         "sys.exit(main(sys.argv[1:]))")


def zygote_running(code):
    """A ZygoteLauncher class whose process runs ``code`` (with the usual arguments)."""
    class Launcher(ZygoteLauncher):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self.argv = [sys.executable, "-c", code, *self.argv[3:]]
    return Launcher


@pytest.mark.tier3
@pytest.mark.timeout(120)
@pytest_twisted.ensureDeferred
async def test_engines_are_spawned_where_the_zygote_cannot_fork(reaper, monkeypatch, caplog):
    monkeypatch.setattr(local, "ZygoteLauncher", zygote_running(SELECT_REACTOR_ZYGOTE))
    with caplog.at_level(logging.WARNING, "ipkernel.cluster"):
        cluster = LocalCluster(n=2, timeout=TIMEOUT).start()
    try:
        reaper.add_pids(*pids_of(cluster))
        assert "engines cannot be forked here (the installed reactor is " \
               "twisted.internet.selectreactor.SelectReactor" in caplog.text
        assert not cluster.zygote.can_fork and not cluster.zygote.is_alive()
        assert all(type(e) is EngineLauncher for e in cluster.engines)
        assert cluster.controller.forked is False
        assert isinstance(cluster.controller.process, subprocess.Popen)
        tub = fcutil.make_tub()
        try:
            mec = await connect(cluster, tub)
            assert await within(mec.apply(os.getppid), 30) == [os.getpid()] * 2
        finally:
            await close(tub)
    finally:
        cluster.stop()
    assert reaper.all_gone(pids_of(cluster), timeout=0)


@pytest.mark.tier3
@pytest.mark.timeout(60)
def test_a_forked_engine_launcher_spawns_when_its_zygote_refuses(reaper, tmp_path, caplog):
    cluster = ClusterDir(tmp_path / "c").create()
    zygote = zygote_running(SELECT_REACTOR_ZYGOTE)(cluster, timeout=TIMEOUT)
    reaper.add_pids(zygote.start())
    engine = ForkedEngineLauncher(zygote, cluster, 0, ["--furl-wait", "30"])
    try:
        with caplog.at_level(logging.WARNING, "ipkernel.cluster"):
            reaper.add_pids(engine.start())
        assert engine.forked is False and isinstance(engine.process, subprocess.Popen)
        assert "ipengine-0: the zygote cannot fork it (the installed reactor is" in caplog.text
        assert engine.is_alive()
        assert zygote.wait(TIMEOUT) == 0   # it said so and left
    finally:
        # the engine may still be importing, before its SIGTERM handler is set
        assert engine.shutdown(timeout=10) in (0, -signal.SIGTERM)
        zygote.shutdown(timeout=10)


@pytest.mark.tier3
@pytest.mark.timeout(120)
def test_ctrl_c_while_an_engine_is_forked_leaves_nothing(reaper, monkeypatch, tmp_path):
    # Ctrl-C once the zygote forked an engine, before this side read its pid:
    # stopping the zygote stops that engine too (and the controller it forked first).
    original = ZygoteLauncher._wait_event

    def interrupted(self, deadline, late):
        if self.can_fork and "ipengine-0" in late:
            reaper.wait_for(lambda: "forked ipengine-0#2" in self.log_file.read_text(),
                            "the fork", TIMEOUT)
            raise KeyboardInterrupt
        return original(self, deadline, late)
    monkeypatch.setattr(ZygoteLauncher, "_wait_event", interrupted)
    cluster = LocalCluster(n=2, cluster_dir=reaper.add_cluster_dir(tmp_path / "c"),
                           timeout=TIMEOUT)
    with pytest.raises(KeyboardInterrupt):
        cluster.start()
    log = cluster.zygote.log_file.read_text()
    forked = [int(pid) for pid in re.findall(r"forked ipengine-0#2 as pid (\d+)", log)]
    reaper.add_pids(*forked, *pids_of(cluster))
    assert len(forked) == 1
    assert cluster.controller.forked and "forked ipcontroller#1 as pid" in log
    assert cluster.engines[0].process is None   # its start never learnt the pid
    # they stop on their own (the zygote asked the forked engine to): wait, bounded
    assert reaper.all_gone([*pids_of(cluster), *forked], timeout=TIMEOUT)
    assert not cluster.is_running()


@pytest.mark.tier3
@pytest.mark.timeout(120)
def test_lines_on_the_zygotes_stdout_that_are_not_events_are_ignored(reaper, monkeypatch):
    monkeypatch.setattr(local, "ZygoteLauncher", zygote_running(
        "print('some start-up noise', flush=True)\n"
        "import sys; from ipkernel.engine.zygote import main\n"
        "sys.exit(main(sys.argv[1:]))"))
    with LocalCluster(n=1, timeout=TIMEOUT) as cluster:
        reaper.add_pids(*pids_of(cluster))
        assert cluster.engines[0].forked and cluster.engines[0].is_alive()
    assert reaper.all_gone(pids_of(cluster), timeout=0)


@pytest.mark.tier3
@pytest.mark.timeout(120)
def test_a_zygote_that_dies_before_it_is_ready_fails_the_start(reaper, monkeypatch):
    monkeypatch.setattr(local, "ZygoteLauncher", zygote_running(
        "import sys; print('zygote: no luck here', file=sys.stderr); sys.exit(3)"))
    cluster = LocalCluster(n=2, timeout=TIMEOUT)
    with pytest.raises(LaunchError, match=r"(?s)^ipengine-zygote \(which forks the engines\) "
                                          r"exited with status 3.*zygote: no luck here"):
        cluster.start()
    reaper.add_pids(*pids_of(cluster))
    assert reaper.all_gone(pids_of(cluster), timeout=0)
    assert not cluster.is_running()


SCRIPT = textwrap.dedent("""
    import signal, sys
    from ipkernel.cluster import LocalCluster
    cluster = LocalCluster(n=2, timeout=60).start()
    print(cluster.controller.pid, cluster.zygote.pid, *(e.pid for e in cluster.engines),
          flush=True)
    if sys.argv[1] == "wait":
        signal.pause()
""")


@pytest.mark.tier3
@pytest.mark.timeout(120)
def test_zygote_and_forked_engines_stop_at_interpreter_exit(reaper, tmp_path):
    done = subprocess.run([sys.executable, "-c", SCRIPT, "exit"], capture_output=True,
                          text=True, timeout=TIMEOUT, cwd=tmp_path)
    pids = [int(p) for p in done.stdout.split()]
    reaper.add_pids(*pids)
    assert done.returncode == 0, done.stderr
    assert len(pids) == 4
    assert reaper.all_gone(pids, timeout=0)


@pytest.mark.tier3
@pytest.mark.timeout(120)
def test_zygote_and_forked_engines_stop_when_the_launching_process_is_killed(reaper, tmp_path):
    out = tmp_path / "out"
    with open(out, "w") as f:
        parent = reaper.add_popen(subprocess.Popen(
            [sys.executable, "-c", SCRIPT, "wait"], stdout=f, stderr=subprocess.STDOUT, cwd=tmp_path,
            env={**os.environ, "TMPDIR": str(tmp_path)}))
    line = reaper.wait_for(lambda: out.read_text().endswith("\n") and out.read_text(),
                           "the pids of the cluster", TIMEOUT)
    pids = [int(p) for p in line.split()]
    reaper.add_pids(*pids)
    assert len(pids) == 4 and all(process_alive(p) for p in pids)
    parent.kill()
    parent.wait(10)
    assert reaper.all_gone(pids, timeout=20)
