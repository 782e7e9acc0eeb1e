"""Tier 3: live output end to end (issue 16): engines' prints reach the
client that made the call while the command still runs (a client program
and ``ipython`` whose stdout is a pipe), are kept in PendingResult.stdout for
apply and map, never reach another client, and a flood is bounded.

The engines' code waits for a release file the test writes only once it
has read the first lines: they can only have arrived while the command ran.
"""
import queue
import re
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from ipkernel.cluster import LocalCluster

pytestmark = [pytest.mark.tier3, pytest.mark.timeout(180)]

#: Seconds to wait for a line of a client program, or for the release inside an engine.
WAIT = 60

#: Engine code: print, wait for the release file (bounded), print again.
HELD = """\
import os, time
print("first", flush=True)
deadline = time.monotonic() + {wait}
while not os.path.exists({release!r}) and time.monotonic() < deadline:
    time.sleep(0.02)
print("second released" if os.path.exists({release!r}) else "second timed out")
"""

CLIENT = """
import sys
from ipkernel.client import MultiEngineClient
mec = MultiEngineClient(sys.argv[1])
mec.execute(open(sys.argv[2]).read(), stream=True)
print("call returned", flush=True)
"""

IPYTHON_SCRIPT = """
from ipkernel.client import MultiEngineClient
mec = MultiEngineClient({furl_file!r})
%load_ext ipkernel
mec.activate()
get_ipython().run_cell_magic("px", "", open({code!r}).read())
print("call returned", flush=True)
"""


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    with LocalCluster(n=2, cluster_dir=tmp_path_factory.mktemp("live"), timeout=60) as c:
        yield c


class Lines:
    """The lines of a process's stdout, read by a thread; :meth:`until` waits for one."""

    def __init__(self, process):
        self.process = process
        self.seen = []
        self._queue = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for line in self.process.stdout:
            self._queue.put(line.rstrip("\n"))
        self._queue.put(None)

    def until(self, wanted, timeout=WAIT):
        """Wait (at most ``timeout`` s) until every line of ``wanted`` has been
        seen; the lines seen so far."""
        wanted = set(wanted)
        while not wanted <= set(self.seen):
            try:
                line = self._queue.get(timeout=timeout)
            except queue.Empty:
                break
            if line is None:
                break
            self.seen.append(line)
        assert wanted <= set(self.seen), (f"missing {sorted(wanted - set(self.seen))}; "
                                          f"seen {self.seen}")
        return self.seen


def run_held(tmp_path, command):
    """Start ``command`` (it runs HELD on both engines), check the first lines
    come before the release, release, check the rest; the lines."""
    release = tmp_path / "release"
    (tmp_path / "code.py").write_text(HELD.format(wait=WAIT, release=str(release)))
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               stdin=subprocess.DEVNULL, text=True, cwd=tmp_path)
    try:
        lines = Lines(process)
        before = list(lines.until(["[stdout:0] first", "[stdout:1] first"]))
        assert "call returned" not in before
        release.write_text("go")
        after = lines.until(["[stdout:0] second released", "[stdout:1] second released",
                             "call returned"])
        assert process.wait(WAIT) == 0, after
        assert after.index("call returned") > after.index("[stdout:0] second released")
        return after
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(10)


def test_a_script_prints_engine_output_while_the_command_runs(cluster, tmp_path):
    run_held(tmp_path, [sys.executable, "-c", CLIENT, str(cluster.mec_furl_file),
                        str(tmp_path / "code.py")])


def test_ipython_px_prints_engine_output_while_the_command_runs(cluster, tmp_path):
    script = tmp_path / "held.ipy"
    script.write_text(IPYTHON_SCRIPT.format(furl_file=str(cluster.mec_furl_file),
                                            code=str(tmp_path / "code.py")))
    ipython = Path(sys.executable).with_name("ipython")
    run_held(tmp_path, [str(ipython), "--quick", "--no-banner", "--colors=nocolor",
                        str(script)])


SESSION = Path(__file__).with_name("live_output_session.py")


@pytest.mark.parametrize("check", ["apply_and_map_output_is_kept",
                                   "streamed_calls_print_each_line_with_its_prefix",
                                   "output_goes_to_its_client_only",
                                   "flood_is_kept_or_said_dropped",
                                   "executors_give_real_futures",
                                   "task_output_is_kept_and_shown"])
def test_client_side(cluster, check):
    """Output kept in PendingResult.stdout/.stderr and .metadata for apply,
    map and execute; streamed with prefixes; to its own client only; a flood
    arrives or is said to be dropped, never silently lost (see the session)."""
    done = subprocess.run([sys.executable, str(SESSION), str(cluster.mec_furl_file), check],
                          capture_output=True, text=True, timeout=WAIT * 2,
                          stdin=subprocess.DEVNULL)
    assert done.returncode == 0 and done.stdout.splitlines()[-1] == f"ok {check}", \
        done.stdout[-3000:] + done.stderr[-3000:]


def test_jupyter_px_shows_engine_output_while_the_cell_runs(cluster, tmp_path, jupyter_kernel):
    import nbclient
    import nbformat

    release = tmp_path / "release"
    code = HELD.format(wait=WAIT, release=str(release))
    notebook = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_code_cell(
            f"from ipkernel.client import MultiEngineClient\n"
            f"mec = MultiEngineClient({str(cluster.mec_furl_file)!r})\n"
            f"%load_ext ipkernel\nmec.activate()"),
        nbformat.v4.new_code_cell("%%px\n" + code),
        nbformat.v4.new_code_cell("%px 6 * 7"),
    ])
    arrived = []

    class Watching(nbclient.NotebookClient):
        """Writes the release file once both engines' first lines came."""

        def output(self, outs, msg, display_id, cell_index):
            if msg["msg_type"] == "stream":
                arrived.extend(msg["content"]["text"].splitlines())
                if {"[stdout:0] first", "[stdout:1] first"} <= set(arrived):
                    if not release.exists():
                        arrived.append("-- released --")
                        release.write_text("go")
            return super().output(outs, msg, display_id, cell_index)

    Watching(notebook, timeout=WAIT, startup_timeout=60, kernel_name=jupyter_kernel,
             resources={"metadata": {"path": tmp_path}}).execute()
    # the engines printed "second released": the release came while the cell ran
    assert arrived.index("-- released --") < arrived.index("[stdout:0] second released")
    assert "[stdout:1] second released" in arrived
    shown = [o for o in notebook.cells[2].outputs if o["output_type"] == "stream"]
    values = "".join(o["text"] for o in shown).splitlines()
    assert [re.sub(r":\d+\]", ":k]", v) for v in values] == ["Out[0:k]: 42", "Out[1:k]: 42"]
