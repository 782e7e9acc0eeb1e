"""Tier 4: IPython in a real terminal (tmux) against a real local cluster
(issue 16): Ctrl-C during ``%px`` interrupts the engines' command and gives
the prompt back, with the engines still up; a long map shows a progress bar
that ends at its count.

tmux runs on a socket of its own (killed after the test); the test types
into IPython and reads the screen, waiting for each expected text with a
timeout.
"""
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ipkernel.cluster import LocalCluster
from tier4 import require_tmux

pytestmark = [pytest.mark.tier4, pytest.mark.timeout(180)]

#: Seconds to wait for a text to appear on the screen.
WAIT = 60


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    with LocalCluster(n=2, cluster_dir=tmp_path_factory.mktemp("tty"), timeout=60) as c:
        yield c


class Terminal:
    """An IPython session in a detached tmux session on its own socket."""

    def __init__(self, tmp_path):
        self.socket = f"ipkernel-test-{os.getpid()}-{id(self)}"
        ipython = Path(sys.executable).with_name("ipython")
        env = f"IPYTHONDIR={shlex.quote(str(tmp_path / 'ipythondir'))} TERM=xterm-256color"
        self._tmux("new-session", "-d", "-s", "t", "-x", "160", "-y", "50",
                   f"env {env} {shlex.quote(str(ipython))} --no-banner --colors=nocolor")

    def _tmux(self, *args):
        return subprocess.run(["tmux", "-L", self.socket, *args], capture_output=True,
                              text=True, timeout=30, check=True).stdout

    def type(self, line):
        self._tmux("send-keys", "-t", "t", "-l", line)
        self._tmux("send-keys", "-t", "t", "Enter")

    def ctrl_c(self):
        self._tmux("send-keys", "-t", "t", "C-c")

    def screen(self):
        return self._tmux("capture-pane", "-p", "-t", "t", "-S", "-200")

    def wait_for(self, *texts, timeout=WAIT):
        """The screen once every one of ``texts`` is on it (AssertionError
        after ``timeout`` seconds)."""
        deadline = time.monotonic() + timeout
        while True:
            screen = self.screen()
            if all(text in screen for text in texts):
                return screen
            assert time.monotonic() < deadline, f"not on the screen: {texts}\n{screen}"
            time.sleep(0.1)   # polling the screen: tmux has no event to wait for

    def close(self):
        subprocess.run(["tmux", "-L", self.socket, "kill-server"], capture_output=True,
                       timeout=30)


@pytest.fixture
def terminal(cluster, tmp_path):
    require_tmux()
    term = Terminal(tmp_path)
    try:
        term.wait_for("In [1]:")
        term.type("from ipkernel.client import MultiEngineClient")
        term.type(f"mec = MultiEngineClient({str(cluster.mec_furl_file)!r}, timeout=60)")
        term.type("%load_ext ipkernel")
        term.type("mec.activate(); print('ready')")
        term.wait_for("ready")
        yield term
    finally:
        term.close()


def test_ctrl_c_during_px_interrupts_the_engines_and_gives_the_prompt_back(terminal):
    terminal.type("%px import time; print('sleeping', flush=True); time.sleep(120)")
    terminal.wait_for("[stdout:0] sleeping", "[stdout:1] sleeping")
    terminal.ctrl_c()
    screen = terminal.wait_for("ipkernel: interrupted the command running on engine(s)",
                               "KeyboardInterrupt")
    assert "mec.interrupt_on_ctrl_c = False" in screen
    terminal.type("%px print('alive', id)")
    terminal.wait_for("[stdout:0] alive 0", "[stdout:1] alive 1", timeout=20)


def test_a_long_map_shows_a_bar_that_ends_at_its_count(terminal):
    terminal.type("r = mec.map(lambda x: __import__('time').sleep(0.02) or x, range(300))")
    terminal.type("print('mapped', len(r), r[-1])")
    screen = terminal.wait_for("mapped 300 299")
    assert "300/300" in screen and "map" in screen


def test_input_on_the_engines_is_asked_on_the_terminal_with_the_engine_id(terminal):
    terminal.type("%px answer = input('who are you? ')")
    screen = terminal.wait_for("[stdin:")
    first = 0 if "[stdin:0] who are you?" in screen else 1
    terminal.type(f"engine{first}")
    terminal.wait_for(f"[stdin:{1 - first}] who are you?")
    terminal.type(f"engine{1 - first}")
    terminal.type("%px print('got', answer)")
    terminal.wait_for("[stdout:0] got engine0", "[stdout:1] got engine1")
