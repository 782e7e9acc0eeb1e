"""``python -m ipkernel.cluster.controller --parent-pid PID [ipcontroller options]``.

The ``ipcontroller`` program, plus one duty: it stops cleanly (as on
SIGTERM) once process PID has exited.  Launchers start the controller this
way so that a launcher that dies without cleaning up (killed, or a Jupyter
kernel that is restarted) leaves no controller behind; engines have the
same option built in (``ipengine --parent-pid``).
"""
import argparse
import sys

from twisted.internet import defer, task
from twisted.logger import Logger

from ipkernel import applog
from ipkernel.controller.app import main
from ipkernel.pids import process_alive

log = Logger()

#: Seconds between checks of the parent process.
PARENT_POLL = 1.0


def watch_parent(reactor, parent_pid, interval=PARENT_POLL):
    """A started LoopingCall that stops the reactor once ``parent_pid`` is gone."""
    def check():
        if not process_alive(parent_pid):
            log.warn("the parent process {pid} exited: stopping the controller", pid=parent_pid)
            watch.stop()
            reactor.stop()
    watch = task.LoopingCall(check)
    watch.clock = reactor
    watch.start(interval, now=False)
    return watch


def run(argv=None):
    """Entry point: split off ``--parent-pid``, run ipcontroller with the rest."""
    parser = argparse.ArgumentParser(prog="ipkernel.cluster.controller", add_help=False)
    parser.add_argument("--parent-pid", type=int, required=True)
    options, rest = parser.parse_known_args(sys.argv[1:] if argv is None else argv)
    applog.begin()

    def start(reactor):
        watch = watch_parent(reactor, options.parent_pid)
        d = defer.ensureDeferred(main(reactor, rest))

        def done(result):
            if watch.running:
                watch.stop()
            return result
        return d.addBoth(done)
    task.react(start)


if __name__ == "__main__":
    run()
