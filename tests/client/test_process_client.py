"""Tier 3: a real script using the blocking client (and its own lazily
started reactor thread) against a real ipcontroller and ipengines; Ctrl-C
(SIGINT) during a blocking call hands control back to the script."""
import textwrap

import pytest
import pytest_twisted

pytestmark = [pytest.mark.tier3, pytest.mark.timeout(120)]

SCRIPT = textwrap.dedent("""
    import io, os, sys, threading, time
    from ipkernel.client import reactor as client_reactor
    from ipkernel.client import CompositeError, MultiEngineClient
    from ipkernel.error import ControllerError

    furl_file, cluster_dir = sys.argv[1], sys.argv[2]
    assert client_reactor.reactor_thread() is None, "started at import"

    def check_exit():   # registered first: runs after the client's own exit handler
        from ipkernel.client import connect
        stopped = not client_reactor.reactor_thread().is_alive()
        tub_gone = connect._shared_tub is None
        left_open = globals()["last"]
        released = left_open._holder == [] and "closed" in repr(left_open)
        print("AT EXIT: reactor thread %s, client Tub %s, open client %s" % (
            "stopped" if stopped else "RUNNING", "stopped" if tub_gone else "RUNNING",
            "released" if released else "NOT RELEASED"), flush=True)
    import atexit
    atexit.register(check_exit)
    mec = MultiEngineClient(furl_file)
    thread = client_reactor.reactor_thread()
    assert thread is not None and thread.daemon and thread.is_alive()

    assert mec.get_ids() == [0, 1]
    assert mec.map(lambda x: x ** 10, range(32)) == [x ** 10 for x in range(32)]

    @mec.parallel()
    def f(x):
        return 10.0 * x ** 4
    assert f(range(8)) == [10.0 * x ** 4 for x in range(8)]

    print(mec.execute("print('hello from', id)"))
    mec["a"] = 5
    assert mec["a"] == [5, 5]
    mec.scatter("x", range(10))
    mec.execute("y = [v * 2 for v in x]")
    assert mec.gather("y") == [v * 2 for v in range(10)]
    pr = mec.execute("z = a + 1", block=False)
    mec.barrier([pr])
    assert [r["id"] for r in pr.r] == [0, 1]
    try:
        mec.execute("1/0")
    except CompositeError as e:
        assert str(e).splitlines()[1] == "[0:execute]: ZeroDivisionError: division by zero"
    else:
        raise AssertionError("no CompositeError")

    # the default FURL file of a cluster directory; still one reactor thread
    other = MultiEngineClient(cluster_dir=cluster_dir)
    assert other.pull("z") == [6, 6]
    assert client_reactor.reactor_thread() is thread

    print("BLOCKING", flush=True)
    started = time.monotonic()
    try:
        mec.execute("import time\\nfor _ in range(600): time.sleep(0.1)", timeout=None)
    except KeyboardInterrupt:
        print("INTERRUPTED after %.1f s" % (time.monotonic() - started), flush=True)
    else:
        print("NOT INTERRUPTED", flush=True)
        sys.exit(3)
    print("ENGINES INTERRUPTED", mec.interrupt(), flush=True)
    print("IDS", mec.get_ids(), flush=True)
    mec.close()
    other.close()

    # a client left open, with an unfetched result, when the controller goes
    last = MultiEngineClient(furl_file)
    unfetched = last.execute("b = 1", block=False)
    try:
        last.kill(controller=True)
    except ControllerError:
        pass   # the connection may close before the answer
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:   # until the client sees the controller gone
        try:
            last.get_ids()
        except ControllerError:
            print("CONTROLLER GONE", flush=True)
            break
        time.sleep(0.05)
    print("DONE", flush=True)
""")


@pytest_twisted.ensureDeferred
async def test_script_with_the_blocking_client(processes):
    cluster = processes
    mec = await cluster.start(n_engines=2)
    script = cluster.root / "user_script.py"
    script.write_text(SCRIPT)
    user = cluster.spawn_code(
        "user-script",
        f"import sys; sys.argv = [{str(script)!r}, {cluster.mec_furl_file!r}, "
        f"{str(cluster.dir)!r}]; exec(compile(open(sys.argv[0]).read(), sys.argv[0], 'exec'))")
    await cluster.poll(lambda: "BLOCKING" in user.output or user.ended,
                       "the script to reach its long blocking call")
    assert not user.ended, user.output

    async def engines_busy():
        statuses = await mec.queue_status()
        return all(status["pending"] != "None" for _, status in statuses)
    await cluster.poll(engines_busy, "the engines to run the script's long command")
    user.signal("INT")   # Ctrl-C
    code = await cluster.within(user.wait(30), 30, "the script to finish")
    out = user.output
    assert code == 0, out
    assert "[1] Out[" in out and "hello from 1" in out
    assert "INTERRUPTED after" in out
    assert "ENGINES INTERRUPTED [True, True]" in out
    assert "IDS [0, 1]" in out and "CONTROLLER GONE" in out and "DONE" in out
    assert "Traceback" not in out and "Unhandled" not in out and "Exception ignored" not in out
    assert "AT EXIT: reactor thread stopped, client Tub stopped, open client released" in out
    assert await cluster.within(cluster.controller.wait(30), 30, "the controller to stop") == 0
