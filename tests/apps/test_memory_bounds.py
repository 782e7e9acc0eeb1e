"""Tier 3: the controller's memory is bounded in bytes (issue 13), on real
``ipcontroller`` and ``ipengine`` processes.

* Large prints: each engine's kept execute history stays within
  ``--history-bytes``; an evicted result raises ResultEvicted.
* Large non-blocking pulls left unfetched stay within ``--unfetched-bytes``,
  the oldest raise ResultEvicted, and all is freed when the client goes
  (disconnects, or its process is killed) and when ``--result-ttl`` passes.
* A pulled value over ``--payload-cap`` fails at once with PayloadTooLarge.

Memory is the controller's resident size (VmRSS in /proc/<pid>/status).
"""
import pytest
import pytest_twisted
from foolscap.eventual import flushEventualQueue

from ipkernel import asyncclient
from ipkernel.error import CompositeError, PayloadTooLarge, ResultEvicted

from procstat import rss_bytes

pytestmark = [pytest.mark.tier3, pytest.mark.timeout(120)]

MB = 1 << 20




async def raises(exc_type, d, cluster, seconds, what):
    try:
        await cluster.within(d, seconds, what)
    except exc_type as exc:
        return exc
    raise AssertionError(f"{what} did not raise {exc_type.__name__}")


@pytest_twisted.ensureDeferred
async def test_large_prints_keep_the_controller_within_its_history_budget(cluster):
    mec = await cluster.start(1, controller_args=["--history-bytes", "8M"])
    pid = cluster.controller.pid
    await mec.execute("print('warm up')", targets=0)
    baseline = rss_bytes(pid)
    numbers, peak = [], baseline
    for k in range(20):  # 100 MB of output in all, 5 MB a cell
        result = await cluster.within(mec.execute(f"print('{k % 10}' * 5_000_000)", targets=0),
                                      30, f"print number {k}")
        numbers.append(result[0]["number"])
        assert len(result[0]["stdout"]) == 5_000_001
        peak = max(peak, rss_bytes(pid))
    assert peak < baseline + 40 * MB, (
        f"the controller grew from {baseline // MB} to {peak // MB} MB keeping "
        f"100 MB of prints with --history-bytes 8M")
    composite = await raises(CompositeError, mec.get_result(numbers[0], targets=0), cluster,
                             10, "get_result of the first print")
    [exc] = composite.exceptions
    assert isinstance(exc, ResultEvicted)
    assert f"command {numbers[0]}" in str(exc) and "8 MiB" in str(exc)
    assert "--history-bytes" in str(exc)
    latest = await cluster.within(mec.get_result(numbers[-1], targets=0), 10, "the latest")
    assert latest[0]["stdout"].startswith("9" * 10)


@pytest_twisted.ensureDeferred
async def test_unfetched_pulls_are_bounded_and_freed_when_the_client_goes(cluster):
    mec = await cluster.start(1, controller_args=["--unfetched-bytes", "100M"])
    pid = cluster.controller.pid
    await mec.execute("import numpy; a = numpy.ones(30 * 2**20 // 8)", targets=0)
    # a client of its own, to be disconnected
    tub = cluster.new_tub()
    client = await asyncclient.get_multiengine_client(cluster.mec_furl_file, tub=tub, timeout=10)
    assert client.data is not None, "the client did not join the data channel"
    small = await client.pull("a", targets=0)  # the whole path once, before measuring
    assert small[0].nbytes == 30 * MB
    del small
    baseline = rss_bytes(pid)
    ids = []
    for k in range(8):  # 240 MB of results, none fetched
        ids.append(await cluster.within(client.pull("a", targets=0, block=False), 30,
                                        f"non-blocking pull {k}"))
    # each answer is in once its last one can be fetched; the rest wait unfetched
    last = await cluster.within(client.get_pending_deferred(ids[-1], block=True), 60,
                                "the last pull")
    assert last[0].nbytes == 30 * MB
    del last
    held = rss_bytes(pid)
    assert held < baseline + (100 + 50) * MB, (
        f"the controller grew from {baseline // MB} to {held // MB} MB holding 8 unfetched "
        f"30 MB pulls with --unfetched-bytes 100M")
    exc = await raises(ResultEvicted, client.get_pending_deferred(ids[0], block=True), cluster,
                       10, "fetching the first, evicted pull")
    assert "100 MiB" in str(exc) and "--unfetched-bytes" in str(exc)

    # the client goes without fetching the rest: the controller frees them
    cluster.tubs.remove(tub)  # stopped here, not again at cleanup
    await tub.stopService()
    await flushEventualQueue()
    client.close()

    async def freed():
        return rss_bytes(pid) < baseline + 30 * MB
    await cluster.poll(freed, "the controller's memory to go back near its baseline "
                              f"({baseline // MB} MB)", timeout=20)
    # and it still serves the other client
    assert await cluster.within(mec.execute("b = 1", targets=0), 10, "an execute") is not None


@pytest_twisted.ensureDeferred
async def test_pull_over_the_payload_cap_fails_at_once(cluster):
    mec = await cluster.start(1, controller_args=["--payload-cap", "10000000"])
    await mec.execute("import numpy; big = numpy.ones(20 * 2**20 // 8); "
                      "fine = numpy.ones(2**20)", targets=0)
    exc = await raises(PayloadTooLarge, mec.pull("big", targets=0), cluster, 10,
                       "a pull over the cap")
    text = str(exc)
    assert "payload cap of 10000000 bytes" in text and "--payload-cap" in text
    assert "in pieces" in text
    assert str(20 * MB) in text.replace(",", "") or "20 MiB" in text
    deferred_id = await mec.pull("big", targets=0, block=False)
    await raises(PayloadTooLarge, mec.get_pending_deferred(deferred_id, block=True), cluster,
                 10, "fetching a non-blocking pull over the cap")
    # under the cap the same client and engine go on working
    fine = await cluster.within(mec.pull("fine", targets=0), 10, "a pull under the cap")
    assert fine[0].nbytes == 8 * MB


#: A client process that leaves 8 large pulls unfetched, says so, and waits to be killed.
PULLER = """
import sys, time
from ipkernel.client import MultiEngineClient
mec = MultiEngineClient(sys.argv[1])
pending = [mec.pull("a", targets=0, block=False) for _ in range(8)]
assert pending[-1].get_result(timeout=60)[0].nbytes == 30 * 2**20
print("PULLS LEFT UNFETCHED", flush=True)
time.sleep(120)  # killed by the test long before
"""


@pytest_twisted.ensureDeferred
async def test_a_killed_clients_unfetched_pulls_are_freed(cluster):
    mec = await cluster.start(1, controller_args=["--unfetched-bytes", "150M"])
    pid = cluster.controller.pid
    await mec.execute("import numpy; a = numpy.ones(30 * 2**20 // 8)", targets=0)
    fine = await mec.pull("a", targets=0)  # the whole path once, before measuring
    del fine
    baseline = rss_bytes(pid)
    puller = cluster.spawn_code("puller", "import sys; sys.argv = ['puller', "
                                f"{cluster.mec_furl_file!r}]\n" + PULLER)
    await cluster.poll(lambda: "PULLS LEFT UNFETCHED" in puller.output or puller.ended,
                       "the client's pulls", timeout=60)
    assert not puller.ended, puller.output
    held = rss_bytes(pid)
    assert baseline + 60 * MB < held < baseline + (150 + 50) * MB, (
        f"{baseline // MB} -> {held // MB} MB with 4 of 8 unfetched 30 MB pulls kept")
    puller.signal("KILL")
    await puller.wait()

    async def freed():
        return rss_bytes(pid) < baseline + 30 * MB
    await cluster.poll(freed, "the controller's memory to go back near its baseline "
                              f"({baseline // MB} MB) after the client was killed", timeout=30)


@pytest_twisted.ensureDeferred
async def test_unfetched_results_really_expire(cluster):
    mec = await cluster.start(1, controller_args=["--result-ttl", "1"])
    pid = cluster.controller.pid
    await mec.execute("import numpy; a = numpy.ones(30 * 2**20 // 8)", targets=0)
    fine = await mec.pull("a", targets=0)
    del fine
    baseline = rss_bytes(pid)
    deferred_id = await mec.pull("a", targets=0, block=False)

    async def kept():
        return rss_bytes(pid) > baseline + 20 * MB
    await cluster.poll(kept, "the unfetched pull to be kept", timeout=20, interval=0.02)

    async def expired():  # nobody asks: the controller's own sweep drops it
        return rss_bytes(pid) < baseline + 10 * MB
    await cluster.poll(expired, "the unfetched pull to expire", timeout=20)
    exc = await raises(ResultEvicted, mec.get_pending_deferred(deferred_id, block=True),
                       cluster, 10, "fetching the expired pull")
    assert "more than 1 s" in str(exc) and "--result-ttl" in str(exc)
