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


def fails(x):
    print("about to fail", x)
    raise ValueError(f"bad {x}")


def executors_give_real_futures(mec):
    import concurrent.futures
    from ipkernel.client import TaskClient

    with mec.executor() as pool:
        futures = [pool.submit(pow, 2, k) for k in range(6)]
        assert [f.result(WAIT) for f in futures] == [2 ** k for k in range(6)]
        assert all(isinstance(f, concurrent.futures.Future) for f in futures)
        assert list(pool.map(abs, [-1, -2, 3], timeout=WAIT)) == [1, 2, 3]
        failed = pool.submit(fails, 1)
        assert isinstance(failed.exception(WAIT), ValueError), failed.exception()
        where = [pool.submit(lambda: id).result(WAIT) for _ in range(4)]
        assert where == [0, 1, 0, 1], where            # round robin
    try:
        pool.submit(abs, 1)
    except RuntimeError as exc:
        assert "shutdown" in str(exc)
    else:
        raise AssertionError("submit after shutdown")
    with TaskClient(sys.argv[1].replace("mec.furl", "tc.furl"), timeout=WAIT) as tc:
        with tc.executor() as pool:
            done = concurrent.futures.as_completed([pool.submit(pow, 3, k) for k in range(5)],
                                                   timeout=WAIT)
            assert sorted(f.result() for f in done) == [3 ** k for k in range(5)]
            assert isinstance(pool.submit(fails, 2).exception(WAIT), ValueError)


def task_output_is_kept_and_shown(mec):
    from ipkernel.client import MapTask, StringTask, TaskClient

    with TaskClient(sys.argv[1].replace("mec.furl", "tc.furl"), timeout=WAIT) as tc:
        tr = tc.run(StringTask("print('in a task'); y = 1", pull="y"), block=True)
        assert tr.stdout == "in a task\n" and tr.ns.y == 1, (tr.stdout, tr)
        tr = tc.run(StringTask("import sys; print('oops', file=sys.stderr); 1/0"), block=True)
        assert tr.stderr == "oops\n" and tr.failure is not None, tr.stderr
        out = io.StringIO()
        tc.stream = True
        with redirect_stdout(out):
            assert tc.run(MapTask(shout, (5,)), block=True) == 5
            assert tc.map(shout, [1, 2]) == [1, 2]
        lines = out.getvalue().splitlines()
        assert len(lines) == 3 and all(re.fullmatch(r"\[stdout:\d\] value \d", l) for l in lines), lines
        tc.stream = False
        out = io.StringIO()
        with redirect_stdout(out):
            assert tc.run(MapTask(shout, (6,)), block=True) == 6
        assert out.getvalue() == ""


if __name__ == "__main__":
    check = sys.argv[2]
    with MultiEngineClient(sys.argv[1], timeout=WAIT) as client:
        globals()[check](client)
    print("ok", check)
