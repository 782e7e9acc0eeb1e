"""The pulse process that answers for a busy engine (issue 13).

Tier 1: its wire format, how it reads a process's state from a fake
``/proc``, where it listens.  Tier 2: a real pulse process watching a real
process (``sleep``, a busy loop), asked over loopback UDP by the
controller's :class:`PulseProber`.
"""
import os
import signal
import socket
import subprocess
import sys

import pytest
import pytest_twisted
from twisted.internet import reactor, task

from ipkernel.controller.pulseprobe import PulseAddress, PulseProber
from ipkernel.engine import pulse_child as pc
from ipkernel.engine.pulse import Pulse, PulseError, bind_host, furl_hosts

KEY = bytes(range(pc.KEY_SIZE))
NONCE = b"n" * pc.NONCE_SIZE


# -- tier 1 --------------------------------------------------------------------------------

@pytest.mark.tier1
def test_request_and_answer_round_trip():
    nonce = pc.check_request(KEY, pc.make_request(KEY, NONCE))
    assert nonce == NONCE
    answer = pc.make_answer(KEY, NONCE, pc.BUSY, 123456)
    assert len(answer) == pc.ANSWER_SIZE
    assert pc.check_answer(KEY, answer) == (NONCE, pc.BUSY, 123456)


@pytest.mark.tier1
def test_forged_or_damaged_datagrams_are_refused():
    other = bytes(pc.KEY_SIZE)
    request = pc.make_request(KEY, NONCE)
    answer = pc.make_answer(KEY, NONCE, pc.IDLE, 1)
    assert pc.check_request(other, request) is None
    assert pc.check_answer(other, answer) is None
    for k in (0, 5, len(request) - 1):
        damaged = bytearray(request)
        damaged[k] ^= 1
        assert pc.check_request(KEY, bytes(damaged)) is None
    damaged = bytearray(answer)
    damaged[len(pc.ANSWER) + pc.NONCE_SIZE] = ord("B")  # "idle" changed into "busy"
    assert pc.check_answer(KEY, bytes(damaged)) is None
    assert pc.check_request(KEY, request + b"x") is None
    assert pc.check_request(KEY, b"") is None
    assert pc.check_answer(KEY, request) is None  # a request is not an answer
    assert pc.check_request(KEY, answer) is None


def fake_proc(root, pid, state, threads=(), comm="python3"):
    def stat(s):
        # fields after the command: state ppid pgrp session tty tpgid flags minflt cminflt
        # majflt cmajflt utime stime ...
        return f"{pid} ({comm}) {s} 1 1 1 0 -1 0 0 0 0 0 70 30 0 0 20 0 1\n"
    base = root / str(pid)
    (base / "task").mkdir(parents=True)
    (base / "stat").write_text(stat(state))
    for tid, s in enumerate(threads, start=pid):
        (base / "task" / str(tid)).mkdir()
        (base / "task" / str(tid) / "stat").write_text(stat(s))
    return root


@pytest.mark.tier1
@pytest.mark.parametrize("state, threads, expected", [
    ("R", ["R"], pc.BUSY),              # C code holding the GIL in the main thread
    ("D", ["D"], pc.BUSY),              # uninterruptible I/O
    ("S", ["S", "R", "S"], pc.BUSY),    # another thread holds the GIL, the main one waits
    ("S", ["S", "S"], pc.IDLE),         # every thread sleeps: frozen if it does not answer
    ("T", ["T", "T"], pc.STOPPED),      # SIGSTOP
    ("t", ["t"], pc.STOPPED),           # stopped by a debugger
    ("Z", [], pc.GONE),
    ("X", [], pc.GONE),
])
def test_engine_state_from_proc(tmp_path, state, threads, expected):
    root = fake_proc(tmp_path, 4242, state, threads)
    assert pc.engine_state(4242, proc=str(root)) == (expected, 100)


@pytest.mark.tier1
def test_engine_state_of_a_missing_process_is_gone(tmp_path):
    assert pc.engine_state(4242, proc=str(tmp_path))[0] == pc.GONE


@pytest.mark.tier1
def test_engine_state_with_a_hostile_command_name(tmp_path):
    root = fake_proc(tmp_path, 7, "T", ["T"], comm="x) R (y")
    assert pc.engine_state(7, proc=str(root))[0] == pc.STOPPED


@pytest.mark.tier1
def test_engine_state_of_this_process_is_busy():
    assert pc.engine_state(os.getpid())[0] == pc.BUSY  # this thread is running


@pytest.mark.tier1
@pytest.mark.parametrize("furl, host", [
    ("pb://abc@tcp:127.0.0.1:4000/name", "127.0.0.1"),
    ("pb://abc@tcp:localhost:4000,tcp:[::1]:4000/name", "127.0.0.1"),
    ("pb://abc@127.0.0.1:4000/name", "127.0.0.1"),
    ("pb://abc@tcp:10.1.2.3:4000,tcp:127.0.0.1:4000/name", "::"),
    ("pb://abc@tcp:head.example.org:4000/name", "::"),
    ("pb://abc@/name", "::"),
])
def test_the_pulse_listens_on_loopback_only_for_a_controller_on_this_host(furl, host):
    assert bind_host(furl_hosts(furl)) == host


@pytest.mark.tier1
def test_a_pulse_not_started_offers_nothing():
    assert Pulse().offer() == []
    assert PulseAddress.from_offer("127.0.0.1", Pulse().offer()) is None


# -- tier 2: a real pulse process ----------------------------------------------------------

@pytest.fixture
def watched():
    """Processes for a pulse to watch (killed and reaped afterwards)."""
    started = []

    def start(code="import time; time.sleep(60)"):
        proc = subprocess.Popen([sys.executable, "-c", code])
        started.append(proc)
        return proc
    yield start
    for proc in started:
        if proc.poll() is None:
            proc.send_signal(signal.SIGCONT)
            proc.kill()
        proc.wait()


@pytest.fixture
def pulses():
    made = []

    def make(pid):
        pulse = Pulse("127.0.0.1", pid=pid)
        pulse.start()
        made.append(pulse)
        return pulse
    yield make
    for pulse in made:
        pulse.stop()


@pytest_twisted.async_yield_fixture
async def prober():
    made = PulseProber(reactor)
    yield made
    await made.close()


def address_of(pulse):
    return PulseAddress.from_offer("127.0.0.1", pulse.offer())


async def state_becomes(prober, pulse, wanted, timeout=10.0):
    """Ask ``pulse`` until it says ``wanted``; return the answers seen."""
    seen = []
    deadline = reactor.seconds() + timeout
    while reactor.seconds() < deadline:
        outcome = await prober.ask(address_of(pulse), 0.5)
        seen.append(outcome and outcome[0])
        if outcome and outcome[0] == wanted:
            return seen
        await task.deferLater(reactor, 0.05, lambda: None)
    raise AssertionError(f"the pulse never said {wanted!r}: {seen}")


@pytest.mark.tier2
@pytest_twisted.ensureDeferred
async def test_a_real_pulse_tells_idle_stopped_and_gone(watched, pulses, prober):
    proc = watched()
    pulse = pulses(proc.pid)
    await state_becomes(prober, pulse, pc.IDLE)
    proc.send_signal(signal.SIGSTOP)
    await state_becomes(prober, pulse, pc.STOPPED)
    proc.send_signal(signal.SIGCONT)
    await state_becomes(prober, pulse, pc.IDLE)
    proc.kill()
    proc.wait()
    # it answers "gone" or, having noticed, exits and answers nothing
    outcome = await prober.ask(address_of(pulse), 0.5)
    assert outcome is None or outcome[0] == pc.GONE


@pytest.mark.tier2
@pytest_twisted.ensureDeferred
async def test_a_real_pulse_tells_busy_with_growing_cpu_time(watched, pulses, prober):
    proc = watched("while True: pass")
    pulse = pulses(proc.pid)
    await state_becomes(prober, pulse, pc.BUSY)
    _, first = await prober.ask(address_of(pulse), 1.0)
    await state_becomes(prober, pulse, pc.BUSY)
    deadline = reactor.seconds() + 10
    while True:
        state, later = await prober.ask(address_of(pulse), 1.0)
        if later > first or reactor.seconds() > deadline:
            break
        await task.deferLater(reactor, 0.05, lambda: None)
    assert state == pc.BUSY and later > first


@pytest.mark.tier2
@pytest_twisted.ensureDeferred
async def test_a_pulse_ignores_garbage_and_the_wrong_key(watched, pulses, prober):
    proc = watched()
    pulse = pulses(proc.pid)
    wrong = PulseAddress("127.0.0.1", pulse.port, bytes(pc.KEY_SIZE))
    assert await prober.ask(wrong, 0.3) is None
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        for junk in (b"", b"IKPq", b"x" * 200, b"IKPq" + b"\0" * 32, os.urandom(2000)):
            sock.sendto(junk, ("127.0.0.1", pulse.port))
    await state_becomes(prober, pulse, pc.IDLE)  # still serving
    assert pulse.process.poll() is None


@pytest.mark.tier2
@pytest_twisted.ensureDeferred
async def test_a_silent_address_gives_none_after_the_wait(prober):
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))  # a port nobody answers on
        started = reactor.seconds()
        outcome = await prober.ask(PulseAddress("127.0.0.1", sock.getsockname()[1], KEY), 0.4)
        assert outcome is None
        assert 0.35 <= reactor.seconds() - started < 3.0
        assert len(sock.recv(100)) == pc.REQUEST_SIZE  # it was asked (twice, in fact)


@pytest.mark.tier2
@pytest_twisted.ensureDeferred
async def test_the_pulse_exits_when_its_engine_does(watched, pulses):
    proc = watched()
    pulse = pulses(proc.pid)
    child = pulse.process
    proc.kill()
    proc.wait()
    deadline = reactor.seconds() + 10  # it looks every CHECK_EVERY (2) s
    while child.poll() is None and reactor.seconds() < deadline:
        await task.deferLater(reactor, 0.1, lambda: None)
    assert child.poll() == 0


@pytest.mark.tier2
def test_the_pulse_exits_when_its_pipe_closes(watched):
    pulse = Pulse("127.0.0.1", pid=watched().pid)
    pulse.start()
    child = pulse.process
    child.stdin.close()  # what the engine's exit does, however it dies
    assert child.wait(5) == 0
    pulse.stop()


@pytest.mark.tier2
def test_a_pulse_that_cannot_start_says_so(watched):
    pulse = Pulse("203.0.113.1", pid=watched().pid)  # not an address of this machine
    with pytest.raises(PulseError, match="exited at start"):
        pulse.start()
    assert pulse.offer() == []


@pytest.mark.tier2
def test_the_pulse_process_is_small(watched, pulses):
    pulse = pulses(watched().pid)
    status = open(f"/proc/{pulse.process.pid}/status").read()
    rss_kib = int(status.split("VmRSS:")[1].split()[0])
    print(f"pulse VmRSS: {rss_kib} kB")
    assert rss_kib < 16 * 1024


@pytest.mark.tier1
@pytest.mark.parametrize("host, interface", [("127.0.0.1", "127.0.0.1"), ("127.3.4.5", "127.0.0.1"),
                                             ("10.0.0.1", ""), ("::1", "::1"), ("fe80::1", "::"),
                                             ("head.example.org", "")])
def test_the_prober_asks_engines_on_this_host_from_loopback_only(host, interface):
    from ipkernel.controller.pulseprobe import _interface_for
    assert _interface_for(host) == interface


@pytest.mark.tier2
@pytest_twisted.ensureDeferred
async def test_the_probers_socket_for_local_engines_listens_on_loopback(watched, pulses, prober):
    pulse = pulses(watched().pid)
    await state_becomes(prober, pulse, pc.IDLE)
    [port] = prober._ports.values()
    assert port.getHost().host == "127.0.0.1"


@pytest.mark.tier2
@pytest_twisted.ensureDeferred
async def test_a_pulse_on_every_interface_answers_on_ipv4_loopback(watched, prober):
    # what an engine whose controller is on another host starts (bound to "::")
    pulse = Pulse("::", pid=watched().pid)
    pulse.start()
    try:
        await state_becomes(prober, pulse, pc.IDLE)  # asked at 127.0.0.1
    finally:
        pulse.stop()


@pytest.mark.tier2
@pytest_twisted.ensureDeferred
async def test_the_prober_takes_only_the_right_keys_answer_to_its_own_question(prober):
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as fake_pulse:
        fake_pulse.bind(("127.0.0.1", 0))
        fake_pulse.settimeout(5)
        asked = prober.ask(PulseAddress("127.0.0.1", fake_pulse.getsockname()[1], KEY), 3.0)
        request, controller = fake_pulse.recvfrom(100)
        nonce = pc.check_request(KEY, request)
        assert nonce is not None
        forged = [b"", os.urandom(pc.ANSWER_SIZE), pc.make_answer(bytes(pc.KEY_SIZE), nonce,
                                                                  pc.BUSY, 1),
                  pc.make_answer(KEY, b"x" * pc.NONCE_SIZE, pc.BUSY, 1)]  # not its question
        for datagram in forged:
            fake_pulse.sendto(datagram, controller)
        fake_pulse.sendto(pc.make_answer(KEY, nonce, pc.STOPPED, 7), controller)
        assert await asked == (pc.STOPPED, 7)
