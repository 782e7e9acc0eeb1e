"""The client side of tests/client/test_live_output.py, run as its own
program (blocking clients cannot share the test's reactor):
``python live_output_session.py FURL_FILE CHECK`` runs one check and prints
``ok CHECK`` as its last line."""
import io
import re
import sys
from contextlib import redirect_stderr, redirect_stdout

from ipkernel.client import MultiEngineClient

#: Seconds a call may take.
WAIT = 60


def shout(x):
    print("value", x)
    print("warned", x, file=sys.stderr)
    return x


def apply_and_map_output_is_kept(mec):
    mec.stream = False
    pending = mec.apply(shout, (7,), block=False)
    assert pending.get() == [7, 7]
    assert pending.stdout == ["value 7\n", "value 7\n"], pending.stdout
    assert pending.stderr == ["warned 7\n", "warned 7\n"], pending.stderr
    assert [m["engine_id"] for m in pending.metadata] == [0, 1]
    assert pending.metadata[1]["stdout"] == "value 7\n"
    mapped = mec.raw_map(shout, [[1, 2, 3, 4]], block=False)
    assert mapped.get() == [1, 2, 3, 4]
    assert mapped.stdout == ["value 1\nvalue 2\n", "value 3\nvalue 4\n"], mapped.stdout
    one = mec.execute("print(id)", targets=1, block=False)
    assert one.wait(WAIT)
    assert one.stdout == ["1\n"], one.stdout


def streamed_calls_print_each_line_with_its_prefix(mec):
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        values = mec.apply(shout, (3,), stream=True)
        quiet = mec.apply(shout, (4,), stream=False)
    assert values == [3, 3] and quiet == [4, 4]
    assert sorted(out.getvalue().splitlines()) == ["[stdout:0] value 3", "[stdout:1] value 3"], \
        out.getvalue()
    assert sorted(err.getvalue().splitlines()) == ["[stderr:0] warned 3", "[stderr:1] warned 3"]


def output_goes_to_its_client_only(mec):
    theirs = MultiEngineClient(sys.argv[1], timeout=WAIT)
    theirs_pending = theirs.execute("print('private')", block=False)
    mine_pending = mec.execute("print('mine')", block=False)
    assert theirs_pending.wait(WAIT) and mine_pending.wait(WAIT)
    listener = mec._holder[0].output
    seen = [record.text(i, "stdout") for record in listener._records.values() for i in (0, 1)]
    assert "private\n" not in seen and "mine\n" in seen, seen
    assert not listener._unclaimed   # nothing of the other client arrived here either
    theirs.close()


def flood(lines, width):
    for _ in range(lines):
        print("y" * (width - 1))


def flood_is_kept_or_said_dropped(mec):
    lines, width = 12_000, 1000        # 12 MB, three times what an engine keeps waiting
    pending = mec.apply(flood, (lines, width), targets=0, block=False)
    assert pending.get() == [None]
    kept = pending.stdout[0]
    notes = re.findall(r"(\d+) characters of output were dropped", pending.stderr[0])
    assert len(kept) + sum(int(n) for n in notes) == lines * width, (len(kept), notes)
    assert set(kept) <= {"y", "\n"}


if __name__ == "__main__":
    check = sys.argv[2]
    with MultiEngineClient(sys.argv[1], timeout=WAIT) as client:
        globals()[check](client)
    print("ok", check)
