"""Tier 3 (issue 13): engine control out of band, and honest engine input and connections.

Real ``ipcontroller`` and ``ipengine`` processes: ``kill`` of a busy engine is
answered at once, SIGINT to an idle engine is harmless, pushes that would
break the namespace are refused.
"""
import time

import pytest
import pytest_twisted

from ipkernel.client import fcmultiengine
from ipkernel.error import CompositeError, EngineError, QueueCleared

pytestmark = [pytest.mark.tier3, pytest.mark.timeout(120)]

#: "At once": far below the 30 s the busy code would take.
PROMPT = 5.0


async def busy_engine(cluster, mec, engine_id, marker, code="time.sleep(30)"):
    """Start ``code`` on ``engine_id`` (non-blocking) and wait until it runs."""
    pending = await mec.execute(f"import time\nopen({str(marker)!r}, 'w').close()\n{code}",
                                targets=engine_id, block=False)
    await cluster.poll(marker.exists, f"user code to run on engine {engine_id}")
    return pending


async def failure_of(cluster, mec, pending, what):
    with pytest.raises(CompositeError) as info:
        await cluster.within(mec.get_pending_deferred(pending, block=True), PROMPT, what)
    (exc,) = info.value.exceptions
    return exc


@pytest_twisted.ensureDeferred
async def test_kill_of_a_busy_engine_returns_at_once_and_fails_its_commands(cluster, tmp_path):
    mec = await cluster.start()
    pids = await cluster.engine_pids(mec)
    busy = await busy_engine(cluster, mec, 1, tmp_path / "running")
    waiting = await mec.execute("never = 1", targets=1, block=False)

    started = time.monotonic()
    await cluster.within(mec.kill(targets=1), PROMPT, "kill of the busy engine")
    assert time.monotonic() - started < PROMPT

    running = await failure_of(cluster, mec, busy, "the command kill interrupted")
    assert isinstance(running, EngineError)
    assert "engine 1 was killed by a client while running it" in str(running)
    queued = await failure_of(cluster, mec, waiting, "the command queued behind it")
    assert isinstance(queued, QueueCleared) and "before running it" in str(queued)

    engine = cluster.process_with_pid(pids[1])
    assert await engine.wait(PROMPT) == 0
    assert await mec.get_ids() == [0]
    assert (await mec.execute("x = 1", targets=0))[0]["number"] >= 1
    assert not cluster.process_with_pid(pids[0]).ended


@pytest_twisted.ensureDeferred
async def test_kill_of_an_engine_that_ignores_interrupts_still_ends_it(cluster, tmp_path):
    mec = await cluster.start(n_engines=1)
    pids = await cluster.engine_pids(mec)
    stubborn = ("while True:\n"
                "    try:\n"
                "        time.sleep(30)\n"
                "    except KeyboardInterrupt:\n"
                "        pass\n")
    busy = await busy_engine(cluster, mec, 0, tmp_path / "running", stubborn)
    started = time.monotonic()
    await cluster.within(mec.kill(targets=0), PROMPT, "kill of the stubborn engine")
    assert time.monotonic() - started < PROMPT
    engine = cluster.process_with_pid(pids[0])
    assert await engine.wait(3 * PROMPT) == 0
    assert "did not stop within" in engine.output
    running = await failure_of(cluster, mec, busy, "the stubborn command")
    assert isinstance(running, EngineError) and "killed by a client" in str(running)


@pytest_twisted.ensureDeferred
async def test_kill_controller_with_a_busy_engine_stops_everything_promptly(cluster, tmp_path):
    mec = await cluster.start(n_engines=1)
    await busy_engine(cluster, mec, 0, tmp_path / "running")
    started = time.monotonic()
    await cluster.within(mec.kill(controller=True), PROMPT, "kill(controller=True)")
    for proc in [cluster.controller, *cluster.engines]:
        assert await proc.wait(PROMPT) == 0, proc.name
    assert time.monotonic() - started < 2 * PROMPT


@pytest_twisted.ensureDeferred
async def test_sigint_to_an_idle_engine_is_logged_and_harmless(cluster):
    mec = await cluster.start(n_engines=1)
    pids = await cluster.engine_pids(mec)
    engine = cluster.process_with_pid(pids[0])
    engine.signal("INT")   # what launcher.interrupt() sends
    await cluster.poll(lambda: "SIGINT received while idle: ignored" in engine.output,
                       "the engine to log the SIGINT")
    await mec.execute("after = 'still serving'")
    assert await mec.pull("after") == ["still serving"]
    assert await mec.get_ids() == [0] and not engine.ended


@pytest_twisted.ensureDeferred
async def test_sigint_twice_in_quick_succession_stops_an_idle_engine(cluster):
    mec = await cluster.start(n_engines=1)
    pids = await cluster.engine_pids(mec)
    engine = cluster.process_with_pid(pids[0])
    engine.signal("INT")   # Ctrl-C twice at the terminal of a hand-started engine
    # (two signals sent at once may reach the process as one: wait for the first)
    await cluster.poll(lambda: "SIGINT received while idle" in engine.output,
                       "the engine to see the first SIGINT", 10)
    engine.signal("INT")
    assert await engine.wait() == 0
    assert "SIGINT received twice" in engine.output


@pytest_twisted.ensureDeferred
async def test_sigint_to_a_busy_engine_fails_the_call_and_the_engine_stays(cluster, tmp_path):
    mec = await cluster.start(n_engines=1)
    pids = await cluster.engine_pids(mec)
    engine = cluster.process_with_pid(pids[0])
    busy = await busy_engine(cluster, mec, 0, tmp_path / "running")
    started = time.monotonic()
    engine.signal("INT")
    exc = await failure_of(cluster, mec, busy, "the interrupted sleep")
    assert isinstance(exc, KeyboardInterrupt)
    assert time.monotonic() - started < PROMPT
    assert (await mec.execute("y = 2", targets=0))[0]["number"] >= 1
    assert not engine.ended


@pytest.mark.parametrize("size", [1, 1 << 20], ids=["small", "bulk"])   # bulk: data channel
@pytest.mark.parametrize("client_check", [True, False], ids=["client", "engine"])
@pytest.mark.parametrize("namespace, named", [
    ({"__builtins__": 1}, "'__builtins__'"),
    ({"not an identifier": 1}, "'not an identifier'"),
    ({"class": 1}, "'class'"),
], ids=["builtins", "space", "keyword"])
@pytest_twisted.ensureDeferred
async def test_push_of_a_name_that_breaks_the_namespace_is_refused(cluster, monkeypatch,
                                                                   namespace, named,
                                                                   client_check, size):
    mec = await cluster.start(n_engines=1)
    before = await mec.keys()
    if not client_check:  # as a client without the early check: the engine refuses it
        monkeypatch.setattr(fcmultiengine, "check_push_names", lambda *args: None)
    with pytest.raises((ValueError, CompositeError)) as info:
        await mec.push({**{k: b"v" * size for k in namespace}, "fine": b"v" * size})
    exc = info.value
    if not client_check:
        assert isinstance(exc, CompositeError)
        (exc,) = exc.exceptions
    assert isinstance(exc, ValueError)
    assert named in str(exc) and "nothing was pushed" in str(exc)
    assert await mec.keys() == before   # nothing changed, not even the good key
    result = await mec.execute("z = len([1, 2, 3])\nz")
    assert result[0]["display"]["repr"] == "3"


# --------------------------------------------------------------------------- connections

def stale_copy(furl, tmp_path, swissnum=None, tubid=None):
    """A FURL file holding ``furl`` with another swissnum and/or tub id."""
    head, _, secret = furl.strip().rpartition("/")
    if tubid is not None:
        head = "pb://" + tubid + "@" + head.split("@", 1)[1]
    path = tmp_path / "stale-engine.furl"
    path.write_text(f"{head}/{swissnum or secret}\n")
    path.chmod(0o600)
    return path


@pytest_twisted.ensureDeferred
async def test_an_unreachable_controller_is_reported_within_seconds(cluster, tmp_path):
    await cluster.start(n_engines=0)
    furl = open(cluster.engine_furl_file).read()
    stale = stale_copy(furl, tmp_path)
    cluster.controller.signal("TERM")
    assert await cluster.controller.wait() == 0

    started = time.monotonic()
    engine = cluster.start_engine("--furl-file", str(stale))
    await cluster.poll(lambda: "cannot reach the controller" in engine.output,
                       "the engine to say it cannot reach the controller", timeout=PROMPT)
    assert time.monotonic() - started < PROMPT
    port = furl.split("@", 1)[1].split("/", 1)[0].rsplit(":", 1)[1]
    line = next(li for li in engine.output.splitlines() if "cannot reach the controller" in li)
    assert f"127.0.0.1:{port}" in line and str(stale) in line
    assert "connection refused" in line and "retrying for up to 60 s" in line
    assert "is ipcontroller running?" in line
    assert furl.strip().rpartition("/")[2] not in engine.output  # no secret
    assert not engine.ended   # it keeps trying (until --register-timeout)


@pytest.mark.parametrize("wrong", ["swissnum", "tubid"])
@pytest_twisted.ensureDeferred
async def test_a_stale_furl_ends_the_engine_at_once(cluster, tmp_path, wrong):
    mec = await cluster.start(n_engines=0)
    furl = open(cluster.engine_furl_file).read()
    if wrong == "swissnum":
        stale = stale_copy(furl, tmp_path, swissnum="a" * 32)
    else:
        stale = stale_copy(furl, tmp_path, tubid="b" * 32)
    started = time.monotonic()
    engine = cluster.start_engine("--furl-file", str(stale))
    assert await engine.wait(4 * PROMPT) == 1
    assert time.monotonic() - started < 4 * PROMPT   # not the 60 s of --register-timeout
    assert f"the FURL in FURL file {stale} is stale" in engine.output
    assert "a" * 32 not in engine.output
    assert await mec.get_ids() == []


@pytest_twisted.ensureDeferred
async def test_a_deliberately_stopped_controller_makes_its_engines_exit(cluster):
    await cluster.start(n_engines=1, engine_args=["--stop-wait", "1"])
    engine = cluster.engines[0]
    cluster.controller.signal("TERM")   # what ipcluster stop sends it
    assert await cluster.controller.wait() == 0
    assert await engine.wait(4 * PROMPT) == 0
    assert "says it is shutting down" in engine.output
    assert "was shut down and did not come back within 1 s: this engine exits" in engine.output


@pytest_twisted.ensureDeferred
async def test_an_engine_that_lost_its_controller_in_a_crash_says_so_and_gives_up(cluster):
    await cluster.start(n_engines=1, engine_args=["--reconnect-timeout", "3"])
    engine = cluster.engines[0]
    cluster.controller.signal("KILL")
    await cluster.controller.wait()
    await cluster.poll(lambda: "without notice" in engine.output,
                       "the engine to say it lost the controller", timeout=4 * PROMPT)
    assert "reconnecting for up to 3 s" in engine.output
    assert await engine.wait(4 * PROMPT) == 1
    assert "could not reconnect to the controller" in engine.output
    assert "connection refused" in engine.output


@pytest_twisted.ensureDeferred
async def test_kill_of_a_frozen_engine_returns_and_the_engine_stops_when_it_wakes(cluster):
    mec = await cluster.start(n_engines=1, controller_args=["--heartbeat-period", "30", "--heartbeat-timeout", "60"])
    pids = await cluster.engine_pids(mec)
    engine = cluster.process_with_pid(pids[0])
    engine.signal("STOP")
    started = time.monotonic()
    await cluster.within(mec.kill(targets=0), 3 * PROMPT, "kill of the frozen engine")
    assert time.monotonic() - started < 3 * PROMPT
    assert await mec.get_ids() == []
    await cluster.poll(lambda: "did not answer kill within" in cluster.controller.output,
                       "the controller to log the unanswered kill", timeout=PROMPT)
    engine.signal("CONT")
    assert await engine.wait(2 * PROMPT) == 0
