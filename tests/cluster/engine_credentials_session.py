"""One-time engine credentials on a real LocalCluster (issue 13).

Run by tests/cluster/test_engine_credentials.py (this file is not a test
module): ``python engine_credentials_session.py CLUSTER_DIR``.  Prints
``ENGINE CREDENTIALS SESSION OK`` at the end; any failed check raises.
"""
import os
import signal
import sys
import time
from pathlib import Path

from ipkernel import credentials
from ipkernel.cluster import LocalCluster
from ipkernel.cluster.launcher import EngineLauncher, child_env

DEADLINE = 45


def check(condition, what):
    if not condition:
        raise AssertionError(what)


def wait_for(condition, what, timeout=DEADLINE):
    deadline = time.monotonic() + timeout
    while True:
        try:
            value = condition()
        except Exception:   # noqa: B902 - a client reconnecting, retried until the deadline
            value = None
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.1)


def square(x):
    return x * x


def works(mec, what):
    check(mec.map(square, range(8)) == [x * x for x in range(8)], f"map {what}")
    mec.push({"a": [1, 2, 3]})
    check(mec.pull("a") == [[1, 2, 3]] * len(mec.get_ids()), f"push/pull {what}")


def main(cluster_dir):
    security = Path(cluster_dir) / "security"
    with LocalCluster(n=2, cluster_dir=cluster_dir, timeout=DEADLINE,
                      controller_args=["-r"]) as cluster:
        check(not (security / "ipcontroller-engine.furl").exists(),
              "no engine FURL file under LocalCluster by default")
        check((security / credentials.GATE_FURL).exists(), "the gate FURL file")
        mec = cluster.multiengine_client(timeout=30)
        ids = mec.get_ids()
        check(len(ids) == 2, f"two engines registered: {ids}")
        works(mec, "on the first engines")
        check(mec.execute("import os; e = os.environ.get('IPKERNEL_ENGINE_CREDENTIAL')")
              is not None and mec.pull("e") == [None, None],
              "user code does not find the credential in the environment")

        # kill -9: the cluster restarts the engine, which registers with a new credential
        victim = cluster.engines[0]
        os.kill(victim.pid, signal.SIGKILL)
        exits = cluster.wait_for_engine_exits(
            lambda ex: [e for e in ex if e.new_pid] or None, DEADLINE)
        check(exits and exits[0].status == -signal.SIGKILL, f"the engine was restarted: {exits}")
        ids = wait_for(lambda: len(mec.get_ids()) == 2 and mec.get_ids(),
                       "the restarted engine to register again")
        works(mec, "after an engine restart")

        # one credential, two engines: the second is refused with a clear error
        credential = credentials.mint(cluster._engine_key)
        env = dict(child_env(), **{credentials.CREDENTIAL_ENV: credential})
        first = EngineLauncher(cluster_dir, 50, ["--no-pulse"], env=env)
        second = EngineLauncher(cluster_dir, 51, ["--no-pulse"], env=env)
        try:
            first.start()
            first.wait_ready(DEADLINE)
            wait_for(lambda: len(mec.get_ids()) == 3, "the engine with the credential")
            second.start()
            status = second.wait(DEADLINE)
            text = second.log_text()
            check(status == 1, f"the second engine exited with status 1: {status}\n{text}")
            check("this engine credential was already used" in text, text)
            check(credential.rsplit(".", 1)[1] not in text, "the credential is not logged")
            check(len(mec.get_ids()) == 3, "nothing registered with the used credential")
        finally:
            first.shutdown()
            second.shutdown()
        ids = wait_for(lambda: len(mec.get_ids()) == 2 and mec.get_ids(),
                       "the extra engine to go")

        # the controller killed and started again with -r: the engines register
        # again (with their rejoin credentials) under their ids
        os.kill(cluster.controller.pid, signal.SIGKILL)
        cluster.controller.wait(DEADLINE)
        cluster.controller.start()
        cluster.controller.wait_ready(DEADLINE)
        mec = cluster.multiengine_client(timeout=30)
        wait_for(lambda: mec.get_ids() == ids, f"engines {ids} back after the restart")
        works(mec, "after a controller restart with -r")
        check(not (security / "ipcontroller-engine.furl").exists(),
              "still no engine FURL file after the restart")
        print(f"engines {ids} back after the controller restart")
    print("ENGINE CREDENTIALS SESSION OK")


if __name__ == "__main__":
    main(sys.argv[1])
