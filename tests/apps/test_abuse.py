"""Tier 3: the fault and abuse suite.

Real ``ipcontroller`` and ``ipengine`` processes are attacked as a hostile
or unlucky user would: raw sockets on every listening port (garbage, huge
length prefixes, wrong tokens, half messages, hundreds of idle connections),
abuse through the API (unpicklable values, bad targets, huge prints, exits
and crashes inside engine code) and faults (kill -9 and SIGSTOP of engines
and clients in the middle of their work, a controller restart with
``-r --db=sqlite``).  After each, the controller must still serve a real
client on every engine, its memory must be back within a bound, and no
result may be lost or delivered twice.
"""
import concurrent.futures
import os
import re
import socket
import struct
import sys
import textwrap
import time
import uuid

import pytest
import pytest_twisted
from twisted.internet import threads

from ipkernel import asyncclient
from ipkernel.datachannel import frames
from ipkernel.error import (CompositeError, EngineError, InvalidEngineID, KernelError,
                            SerializationError)
from ipkernel.lane.protocol import HELLO, encode_frame
from ipkernel.task import StringTask

from procstat import fd_count, rss_bytes, thread_count

pytestmark = [pytest.mark.tier3, pytest.mark.timeout(180)]

#: What the controller may keep after an attack is over, over its idle size.
RSS_SLACK_MB = 40
#: Bound for a port to close a connection that never logs in.
LOGIN_DEADLINE = 40.0
WAIT = 30.0


# -- looking at the controller from outside -------------------------------------------------

def rss_mb(pid):
    return rss_bytes(pid) / (1 << 20)


def controller_ports(cluster):
    """{name: port} of every port the controller listens on, read from its
    own log lines and port files."""
    out = cluster.controller.output
    ports = {}
    for role in ("client", "engine"):
        ports[f"foolscap-{role}"] = int(
            (cluster.dir / "security" / f"ipcontroller-{role}.port").read_text())
    data = re.search(r"data channel: client port (\d+), engine port (\d+)", out)
    if data:
        ports["data-client"], ports["data-engine"] = int(data[1]), int(data[2])
    lane = re.search(r"lanes: port (\d+)", out)
    if lane:
        ports["lane"] = int(lane[1])
    return ports


async def start(cluster, n=2, args=()):
    """A controller and ``n`` engines; ``(client, {port name: port})``.  The
    controller's memory after a first round trip is the baseline
    :func:`healthy` compares with."""
    mec = await cluster.start(n, controller_args=[*cluster.FAST_HEARTBEAT, *args])
    ports = controller_ports(cluster)
    assert {"foolscap-client", "foolscap-engine", "data-client", "data-engine",
            "lane"} <= set(ports), cluster.controller.output
    await assert_serves(cluster, n)
    cluster.baseline = (cluster.controller.pid, rss_mb(cluster.controller.pid))
    return mec, ports


async def healthy(cluster, n_engines, what="the attack"):
    """After a case: the controller serves a new client on every engine and
    its memory is back near the baseline taken by :func:`start`."""
    await assert_serves(cluster, n_engines)
    pid, baseline = getattr(cluster, "baseline", (None, None))
    if pid == cluster.controller.pid:
        await wait_rss_back(cluster, baseline, what)


async def assert_serves(cluster, n_engines):
    """A new client connects and every engine round-trips a unique value."""
    mec = await cluster.connect()
    try:
        ids = await cluster.within(mec.get_ids(), WAIT, "get_ids")
        assert ids == list(range(n_engines)) or len(ids) == n_engines, ids
        token = uuid.uuid4().hex
        await cluster.within(mec.push({"probe": token}), WAIT, "a push to every engine")
        got = await cluster.within(mec.execute("probe2 = probe[::-1]"), WAIT, "an execute")
        assert len(got) == len(ids)
        assert await cluster.within(mec.pull("probe2"), WAIT, "a pull") == [token[::-1]] * len(ids)
    finally:
        mec.close()
        cluster.clients.remove(mec)


async def wait_rss_back(cluster, baseline, what):
    pid = cluster.controller.pid

    def back():
        return rss_mb(pid) <= baseline + RSS_SLACK_MB
    try:
        await cluster.poll(back, f"the controller's memory to come back after {what}", WAIT)
    except AssertionError:
        raise AssertionError(f"after {what} the controller holds {rss_mb(pid):.0f} MB, "
                             f"{baseline:.0f} MB before") from None


# -- raw sockets (blocking, run in threads) --------------------------------------------------

def send_and_wait_close(port, payload, deadline):
    """Connect, send ``payload``, then read until the peer closes; the seconds
    that took, or None if it stayed open past ``deadline``."""
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        try:
            sock.sendall(payload)
        except OSError:
            return time.monotonic() - started  # already closed on us
        while time.monotonic() - started < deadline:
            sock.settimeout(max(0.1, deadline - (time.monotonic() - started)))
            try:
                if not sock.recv(65536):
                    return time.monotonic() - started
            except socket.timeout:
                return None
            except OSError:
                return time.monotonic() - started
    return None


def stream_until_closed(port, header, total, limit):
    """Send ``header`` then zeros, up to ``total`` bytes; how many bytes went
    out before the peer closed (or ``total``)."""
    sent = 0
    chunk = bytes(1 << 20)
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        try:
            sock.sendall(header)
            while sent < total:
                sock.sendall(chunk)
                sent += len(chunk)
                if sent >= limit:
                    break
        except OSError:
            pass
    return sent


def all_at_once(function, calls):
    """A Deferred firing with ``[function(*args) for args in calls]``, the
    calls made at the same time in threads of their own."""
    def run():
        with concurrent.futures.ThreadPoolExecutor(max_workers=len(calls)) as pool:
            return list(pool.map(lambda args: function(*args), calls))
    return threads.deferToThread(run)


def open_idle(port, count):
    socks = []
    for _ in range(count):
        try:
            socks.append(socket.create_connection(("127.0.0.1", port), timeout=5))
        except OSError:
            break
    return socks


def close_all(socks):
    for s in socks:
        try:
            s.close()
        except OSError:
            pass


# -- raw-socket abuse ------------------------------------------------------------------------

GARBAGE = [
    b"\x00" * 64,
    b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
    os.urandom(4096),
    struct.pack(">Q", 12) + b"not a frame!",
]


@pytest_twisted.ensureDeferred
async def test_garbage_on_every_port_is_dropped_and_the_controller_serves(cluster):
    mec, ports = await start(cluster)
    tries = [(name, port, payload) for name, port in ports.items() for payload in GARBAGE]
    took_all = await all_at_once(send_and_wait_close,
                                 [(port, payload, LOGIN_DEADLINE) for _, port, payload in tries])
    for (name, _, payload), took in zip(tries, took_all):
        assert took is not None, f"{name} kept a connection that sent {payload[:16]!r} open"
    assert cluster.controller.ended is False
    await healthy(cluster, 2)


@pytest_twisted.ensureDeferred
async def test_half_messages_meet_a_login_deadline_on_every_port(cluster):
    mec, ports = await start(cluster)
    halves = {
        "foolscap-client": b"GET /id/",
        "foolscap-engine": b"GET /id/",
        "lane": struct.pack("<Q", 100)[:5],
        "data-client": b"\x01\x02",
        "data-engine": b"\x01\x02",
    }
    took_all = await all_at_once(send_and_wait_close,
                                 [(ports[name], half, LOGIN_DEADLINE) for name, half in halves.items()])
    for name, took in zip(halves, took_all):
        assert took is not None, f"{name} kept a half message open past {LOGIN_DEADLINE:g} s"
    await healthy(cluster, 2)


@pytest_twisted.ensureDeferred
async def test_huge_length_prefixes_are_refused_before_their_body(cluster):
    mec, ports = await start(cluster)
    pid, baseline = cluster.baseline
    # a lane frame announcing 16 GiB, a data-channel header announcing the same,
    # a Foolscap header line that never ends: each followed by up to 256 MB
    attacks = {
        "lane": struct.pack("<Q", (1 << 34) - 1),
        "data-client": _data_header(frames.AUTH, (1 << 34) - 1),
        "data-engine": _data_header(frames.PUT, (1 << 34) - 1),
        "foolscap-client": b"GET /id/" + b"a" * 100,
    }
    for name, header in attacks.items():
        sent = await threads.deferToThread(stream_until_closed, ports[name], header,
                                           256 << 20, 256 << 20)
        assert rss_mb(pid) < baseline + 128, (
            f"{name}: the controller grew to {rss_mb(pid):.0f} MB buffering a frame "
            f"({sent >> 20} MB sent)")
    await healthy(cluster, 2, "huge frames")


@pytest_twisted.ensureDeferred
async def test_wrong_tokens_are_refused_and_logged_once_per_peer(cluster):
    mec, ports = await start(cluster)
    lane_hello = _lane_hello(os.urandom(32))
    for _ in range(20):
        assert await threads.deferToThread(send_and_wait_close, ports["lane"], lane_hello,
                                           LOGIN_DEADLINE) is not None
        assert await threads.deferToThread(send_and_wait_close, ports["data-client"],
                                           _data_auth(os.urandom(32)),
                                           LOGIN_DEADLINE) is not None
    await healthy(cluster, 2, "wrong tokens")
    refused = [line for line in cluster.controller.output.splitlines()
               if re.search(r"token was refused|unknown token", line)]
    assert refused, "a refused token left no trace in the controller's log"
    assert len(refused) <= 6, "refused tokens are logged without a rate limit:\n" + \
        "\n".join(refused)


@pytest_twisted.ensureDeferred
async def test_hundreds_of_idle_connections_cost_no_thread_each(cluster):
    mec, ports = await start(cluster)
    pid = cluster.controller.pid
    threads_before, fds_before = thread_count(pid), fd_count(pid)
    held = []
    try:
        for name in ("data-client", "data-engine", "lane", "foolscap-client"):
            held += await threads.deferToThread(open_idle, ports[name], 150)
        assert len(held) >= 400
        await assert_serves(cluster, 2)
        assert thread_count(pid) <= threads_before + 16, (
            f"{thread_count(pid)} threads with {len(held)} idle connections "
            f"({threads_before} before)")
    finally:
        close_all(held)
    await cluster.poll(lambda: fd_count(pid) <= fds_before + 8,
                       "the controller to close the idle connections' sockets", WAIT)
    await healthy(cluster, 2)


def _lane_hello(token):
    return encode_frame(HELLO, 0, b"null", [token])


def _data_auth(token):
    return frames.header(frames.AUTH, frames.NO_ID, len(token)) + token


def _data_header(kind, length):
    return frames.header(kind, frames.NO_ID, length)


# -- API abuse ---------------------------------------------------------------------------------

@pytest_twisted.ensureDeferred
async def test_bad_values_and_targets_get_clear_errors_and_change_nothing(cluster):
    mec, _ = await start(cluster)
    await mec.push({"kept": 1})
    import threading
    with pytest.raises(SerializationError, match="lock|pickle"):
        await mec.push({"bad": threading.Lock()})
    for targets in (99, [0, 99], "nope", [0, 0], -1):
        with pytest.raises((InvalidEngineID, KernelError, ValueError, TypeError)) as info:
            await mec.execute("kept = 2", targets=targets)
        assert str(info.value)
    assert await mec.pull("kept") == [1, 1]  # nothing ran
    await healthy(cluster, 2)


@pytest_twisted.ensureDeferred
async def test_exits_and_crashes_in_engine_code_are_reported(cluster):
    mec, _ = await start(cluster, n=3)
    crashes = {0: "import os; os._exit(3)",
               1: "import ctypes; ctypes.string_at(0)"}  # a segfault
    for engine_id, code in crashes.items():
        with pytest.raises((EngineError, CompositeError)) as info:
            await cluster.within(mec.execute(code, targets=engine_id), WAIT, code)
        assert f"engine {engine_id}" in str(info.value)
    assert await cluster.within(mec.pull("__name__", targets=2), WAIT, "a pull") == ["__main__"]
    await cluster.poll(lambda: _count(mec, 1), "the dead engines to be unregistered", WAIT)
    await healthy(cluster, 1, "crashing engines")


# -- faults -----------------------------------------------------------------------------------

@pytest_twisted.ensureDeferred
async def test_an_engine_killed_during_a_push_to_all_is_reported_with_the_others_results(
        cluster):
    mec, _ = await start(cluster, n=3)
    pids = await cluster.engine_pids(mec)
    victim = cluster.process_with_pid(pids[1])
    await mec.execute("import time", targets=1)
    # engine 1 is busy when the push reaches it, and dies before it can run it
    busy = await mec.execute("time.sleep(30)", targets=1, block=False)
    pushed = mec.push({"v": 5}, block=False)
    pushed_id = await pushed
    victim.signal("KILL")
    with pytest.raises(CompositeError) as info:
        await cluster.within(mec.get_pending_deferred(pushed_id, block=True), WAIT,
                             "the push to fail for engine 1")
    errors = [e for e in info.value.exceptions if isinstance(e, EngineError)]
    assert errors and "engine 1" in str(errors[0])
    with pytest.raises((CompositeError, EngineError)):
        await cluster.within(mec.get_pending_deferred(busy, block=True), WAIT, "the sleep")
    assert await mec.pull("v", targets=[0, 2]) == [5, 5]
    await cluster.poll(lambda: _count(mec, 2), "the killed engine to be unregistered", WAIT)
    await healthy(cluster, 2, "a killed engine")


SESSION = textwrap.dedent("""
    import sys
    from ipkernel import client
    mec = client.MultiEngineClient(sys.argv[1])
    print("connected", flush=True)
    import numpy
    while True:
        mec.push({"big": numpy.ones(50_000_000 // 8)})
""")


@pytest_twisted.ensureDeferred
async def test_a_client_killed_or_frozen_mid_push_does_not_block_others(cluster):
    mec, _ = await start(cluster)
    for sig in ("KILL", "STOP"):
        pusher = cluster.spawn_code(f"pusher-{sig}", SESSION.replace(
            "sys.argv[1]", repr(cluster.mec_furl_file)))
        await cluster.poll(lambda: "connected" in pusher.output, "the pusher to connect", WAIT)
        # let it be in the middle of a push: wait until the engines see data arrive
        await cluster.poll(lambda: rss_mb(cluster.controller.pid) > 0, "the controller", WAIT)
        await _wait_until_pushing(cluster, mec)
        pusher.signal(sig)
        import numpy
        value = numpy.arange(2_000_000, dtype=float)
        await cluster.within(mec.push({"mine": value}), WAIT, f"a large push after {sig}")
        got = await cluster.within(mec.pull("mine", targets=0), WAIT, "a pull")
        assert float(got[0].sum()) == float(value.sum())
        await cluster.within(mec.execute("x = 1"), WAIT, f"a small execute after {sig}")
        await pusher.stop()
    await healthy(cluster, 2)


async def _wait_until_pushing(cluster, mec):
    """Until some engine has received the pusher's array at least once."""
    async def seen():
        try:
            out = await mec.execute("_seen = 'big' in globals()")
        except KernelError:
            return False
        return any(await mec.pull("_seen"))
    await cluster.poll(seen, "the pusher's first push to arrive", WAIT)


@pytest_twisted.ensureDeferred
async def test_sigstop_of_an_engine_during_a_map_fails_clearly_and_the_rest_serve(cluster):
    mec, _ = await start(cluster, n=3)
    pids = await cluster.engine_pids(mec)
    frozen = cluster.process_with_pid(pids[2])
    mapped = await mec.execute("import time; time.sleep(1); r = id", block=False)
    frozen.signal("STOP")
    with pytest.raises(CompositeError) as info:
        await cluster.within(mec.get_pending_deferred(mapped, block=True), WAIT,
                             "the map to report the frozen engine")
    assert any(isinstance(e, EngineError) and "engine 2" in str(e)
               for e in info.value.exceptions)
    frozen.signal("CONT")
    # it comes back and registers again
    await cluster.poll(lambda: _count(mec, 3), "the frozen engine to register again", WAIT)
    await healthy(cluster, 3)


async def _count(mec, n):
    return len(await mec.get_ids()) == n


TASKS = 40


@pytest_twisted.ensureDeferred
async def test_tasks_survive_a_controller_restart_exactly_once(cluster):
    await cluster.start(2, controller_args=["--db", "sqlite"])
    tc = await cluster.within(asyncclient.get_task_client(
        str(cluster.dir / "security" / "ipcontroller-tc.furl"), tub=cluster.new_tub(),
        timeout=10), WAIT, "a task client")
    ids = [await tc.run(StringTask(f"import time; time.sleep(0.05); r = {i}", pull="r"))
           for i in range(TASKS)]
    await cluster.controller.stop()
    cluster.start_controller("-r", "--db", "sqlite", *cluster.FAST_HEARTBEAT)
    fresh = None

    async def reconnect():
        nonlocal fresh
        try:
            fresh = await asyncclient.get_task_client(
                str(cluster.dir / "security" / "ipcontroller-tc.furl"), tub=cluster.new_tub(),
                timeout=5)
        except KernelError:
            return False
        return True
    await cluster.poll(reconnect, "a task client of the restarted controller", WAIT)
    results = []
    for tid in ids:
        result = await cluster.within(fresh.get_task_result(tid, block=True), 60,
                                      f"task {tid}")
        results.append(result["r"])
    assert sorted(results) == list(range(TASKS))  # none lost, none doubled
    assert await fresh.clear() == TASKS
    await healthy(cluster, 2)


def task_client(cluster, timeout=10):
    return asyncclient.get_task_client(str(cluster.dir / "security" / "ipcontroller-tc.furl"),
                                       tub=cluster.new_tub(), timeout=timeout)


def process_state(pid):
    with open(f"/proc/{pid}/stat") as f:
        return f.read().rsplit(")", 1)[1].split()[0]


@pytest_twisted.ensureDeferred
async def test_a_controller_killed_mid_push_fails_the_call_and_comes_back_with_its_engines(
        cluster):
    import numpy
    mec, _ = await start(cluster)
    pushing = mec.push({"big": numpy.ones(25_000_000)})  # 200 MB
    cluster.controller.signal("KILL")
    with pytest.raises(Exception) as info:
        await cluster.within(pushing, WAIT, "the push to fail with the controller gone")
    assert "controller" in str(info.value).lower() or "connection" in str(info.value).lower()
    await cluster.controller.wait()
    cluster.start_controller("-r", *cluster.FAST_HEARTBEAT)
    fresh = await cluster.connect()
    await cluster.wait_for_ids(fresh, [0, 1])  # the engines came back with their ids
    await healthy(cluster, 2)


@pytest_twisted.ensureDeferred
async def test_a_controller_stopped_during_a_task_batch_delivers_every_result_once(cluster):
    await start(cluster)
    tc = await cluster.within(task_client(cluster), WAIT, "a task client")
    ids = await tc.run_many([StringTask(f"r = {i}", pull="r") for i in range(TASKS)])
    cluster.controller.signal("STOP")
    await cluster.poll(lambda: process_state(cluster.controller.pid) in "Tt",
                       "the controller to be stopped", WAIT)
    late = tc.run(StringTask("r = -1", pull="r"))  # waits for the controller
    cluster.controller.signal("CONT")
    ids.append(await cluster.within(late, WAIT, "the task sent while the controller slept"))
    results = await cluster.within(tc.get_task_results(ids, block=True), 60, "the batch")
    assert all(ok for ok, _ in results), results
    assert sorted(r["r"] for _, r in results) == [-1, *range(TASKS)]
    await healthy(cluster, 2, "a stopped controller")


TASK_SESSION = textwrap.dedent("""
    from ipkernel import client
    from ipkernel.task import StringTask
    tc = client.TaskClient(FURL_FILE)
    ids = tc.run_many([StringTask("import time; time.sleep(0.01); r = 1", pull="r")
                       for i in range(N)])
    print("submitted", len(ids), flush=True)
    tc.barrier(ids)
""")
MAP_SESSION = textwrap.dedent("""
    from ipkernel import client
    mec = client.MultiEngineClient(FURL_FILE)
    while True:
        assert mec.map(lambda x: 2 * x, range(5000)) == [2 * x for x in range(5000)]
        print("mapped", flush=True)
""")


@pytest_twisted.ensureDeferred
async def test_clients_killed_during_a_task_batch_and_a_map_lose_nothing_for_others(cluster):
    mec, _ = await start(cluster)
    tc = await cluster.within(task_client(cluster), WAIT, "a task client")
    n = 200
    submitter = cluster.spawn_code("submitter", TASK_SESSION.replace(
        "FURL_FILE", repr(str(cluster.dir / "security" / "ipcontroller-tc.furl"))).replace(
        "N)", f"{n})"))
    mapper = cluster.spawn_code("mapper", MAP_SESSION.replace(
        "FURL_FILE", repr(cluster.mec_furl_file)))
    await cluster.poll(lambda: "submitted" in submitter.output and "mapped" in mapper.output,
                       "the batch to be submitted and a map to be done", WAIT)
    submitter.signal("KILL")
    mapper.signal("KILL")
    # the dead client's tasks are still run, each once, and nothing stays queued
    async def drained():
        status = await tc.queue_status()
        return status["pending"] == 0 and status["scheduled"] == 0 and status
    status = await cluster.poll(drained, "the dead client's tasks to finish", 60)
    assert status["succeeded"] == n and status.get("failed", 0) == 0, status
    assert await mec.map(lambda x: x + 1, range(1000)) == list(range(1, 1001))
    await healthy(cluster, 2, "killed clients")


@pytest_twisted.ensureDeferred
async def test_huge_prints_keep_the_controller_within_its_history_budget(cluster):
    mec, _ = await start(cluster, n=1)
    pid, baseline = cluster.baseline
    for _ in range(12):
        await cluster.within(mec.execute("print('x' * 10_000_000)", targets=0), WAIT,
                             "a huge print")
    budget_mb = 64  # --history-bytes' default, per engine
    assert rss_mb(pid) < baseline + budget_mb + RSS_SLACK_MB, (
        f"{rss_mb(pid):.0f} MB after 120 MB of prints ({baseline:.0f} MB before)")
    await mec.reset()  # lets the history go
    await healthy(cluster, 1, "huge prints")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(pytest.main([__file__, "-v"]))
