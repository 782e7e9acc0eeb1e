"""Tier 3: ProcessLauncher controls a child the way a kernel manager does.

The children are small Python programs, so each behaviour (ready line,
polite stop, kill, interrupt, restart, pid file) is seen in isolation.
"""
import signal
import sys
import textwrap

import pytest

from ipkernel.cluster.launcher import LaunchError, ProcessLauncher
from ipkernel.pids import process_alive

pytestmark = [pytest.mark.tier3, pytest.mark.timeout(60)]

#: A child that says it is ready, then waits for signals; SIGINT ends it with status 3.
WAITER = textwrap.dedent("""
    import signal, sys
    if "ignore-term" in sys.argv:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    print("child ready", flush=True)
    try:
        while True:
            signal.pause()
    except KeyboardInterrupt:
        print("child interrupted", flush=True)
        sys.exit(3)
""")


@pytest.fixture
def make_launcher(tmp_path, reaper):
    launchers = []

    def make(code=WAITER, *args, ready_text="child ready", **kwargs):
        launcher = ProcessLauncher("child", [sys.executable, "-c", code, *args],
                                   tmp_path / "log" / "child.log", ready_text=ready_text,
                                   **kwargs)
        launchers.append(launcher)
        return launcher
    yield make
    for launcher in launchers:
        launcher.shutdown(timeout=5)


def test_start_ready_and_polite_shutdown(make_launcher, reaper):
    launcher = make_launcher()
    pid = launcher.start()
    reaper.add_pids(pid)
    launcher.wait_ready(30)
    assert launcher.is_alive() and process_alive(pid)
    assert launcher.log_text().splitlines()[-1] == "child ready"
    assert launcher.shutdown(timeout=10) == -signal.SIGTERM
    assert not launcher.is_alive() and not process_alive(pid)


def test_shutdown_kills_a_child_that_ignores_the_polite_signal(make_launcher, reaper):
    launcher = make_launcher(WAITER, "ignore-term")
    reaper.add_pids(launcher.start())
    launcher.wait_ready(30)
    assert launcher.shutdown(timeout=0.3) == -signal.SIGKILL


def test_shutdown_now_skips_the_polite_signal(make_launcher, reaper):
    launcher = make_launcher()
    reaper.add_pids(launcher.start())
    launcher.wait_ready(30)
    assert launcher.shutdown(now=True) == -signal.SIGKILL


def test_interrupt_sends_sigint(make_launcher, reaper):
    launcher = make_launcher()
    reaper.add_pids(launcher.start())
    launcher.wait_ready(30)
    assert launcher.interrupt()
    assert launcher.wait(10) == 3
    assert "child interrupted" in launcher.log_text()
    assert not launcher.interrupt()  # nothing left to interrupt


def test_restart_runs_the_same_command_again(make_launcher, reaper):
    launcher = make_launcher()
    first = launcher.start()
    reaper.add_pids(first)
    launcher.wait_ready(30)
    second = launcher.restart(timeout=10)
    reaper.add_pids(second)
    assert second != first and not process_alive(first)
    launcher.wait_ready(30)
    # log_text() is what the current run wrote
    assert launcher.log_text() == "child ready\n"
    assert launcher.log_file.read_text().count("---- child started") == 2


def test_start_twice_is_refused(make_launcher, reaper):
    launcher = make_launcher()
    reaper.add_pids(launcher.start())
    with pytest.raises(RuntimeError, match="already running"):
        launcher.start()


def test_exit_before_ready_raises_with_the_log_tail(make_launcher, reaper):
    code = "import sys\nfor i in range(100): print('line', i)\nsys.exit('fatal: no luck')"
    launcher = make_launcher(code)
    reaper.add_pids(launcher.start())
    with pytest.raises(LaunchError) as info:
        launcher.wait_ready(30)
    message = str(info.value)
    assert message.startswith("child exited with status 1 before it was ready")
    assert str(launcher.log_file) in message
    assert "line 99\nfatal: no luck" in message
    assert "line 10\n" not in message  # only the tail
    assert info.value.exit_code == 1 and info.value.name == "child"


def test_not_ready_in_time_raises_and_leaves_it_running(make_launcher, reaper):
    launcher = make_launcher(ready_text="a line that never comes")
    reaper.add_pids(launcher.start())
    with pytest.raises(LaunchError, match=r"(?s)child was not ready within 0.3 s.*:\nchild ready$"):
        launcher.wait_ready(0.3)
    assert launcher.is_alive()


def test_pid_file_lives_as_long_as_the_process(make_launcher, reaper, tmp_path):
    pid_file = tmp_path / "pid" / "child.pid"
    launcher = make_launcher(pid_file=pid_file)
    pid = launcher.start()
    reaper.add_pids(pid)
    assert pid_file.read_text() == f"{pid}\n"
    assert oct(pid_file.stat().st_mode & 0o777) == oct(0o600)
    launcher.shutdown(timeout=10)
    assert not pid_file.exists()
