"""The interface every compared system implements.

A System owns one running cluster between :meth:`System.start` and
:meth:`System.stop` and offers one method per operation of the workloads.
The methods only *do* the operation; timing is done by the caller
(:mod:`bench.workloads`) so it is the same for every system.  Data is
pushed and pulled under the name ``x``.
"""


class System:
    """Base class: a cluster of ``n`` engines (workers) of one system.

    Subclasses register a stop callable for every cluster they start with
    :meth:`_track`, so :meth:`stop` stops them all, whatever failed.
    ``placement`` (a :class:`bench.hosts.Placement`, default: one host) says
    where the controller, the engines and the client run.
    """

    #: display name (column of the table)
    name = "?"
    #: True for a peer configured to encrypt its traffic (not its default):
    #: the table compares ipkernel with these apart from the defaults.
    encrypted = False

    def __init__(self, placement=None):
        from bench.hosts import Placement

        self._stoppers = []
        self.placement = placement if placement is not None else Placement()

    # -- life cycle --------------------------------------------------------------------

    def start(self, n):
        """Start the main cluster of ``n`` engines and connect; return once all
        are registered."""
        raise NotImplementedError

    def stop(self):
        """Stop every cluster this object started (newest first).  Safe to call again."""
        errors = []
        while self._stoppers:
            stopper = self._stoppers.pop()
            try:
                stopper()
            except Exception as exc:  # keep stopping the others
                errors.append(exc)
        if errors:
            raise errors[0]

    def _track(self, stopper):
        """Remember ``stopper`` for :meth:`stop`; return a callable that runs it once."""
        self._stoppers.append(stopper)

        def stop_now():
            if stopper in self._stoppers:
                self._stoppers.remove(stopper)
                stopper()
        return stop_now

    def startup(self, n):
        """Start a fresh cluster of ``n`` engines (besides the main one) and
        connect, returning once all engines are registered; return a callable
        that stops it.  The caller times this call."""
        raise NotImplementedError

    def memory(self, n, ntasks):
        """On a fresh cluster of ``n`` engines: the controller's (scheduler's)
        memory with its child processes (:func:`bench.procs.tree_memory`), as a
        dict with ``start`` (idle), ``tasks`` (after ``ntasks`` tiny finished
        tasks whose results are kept) and ``clear`` (after the system's clear)."""
        raise NotImplementedError

    def repetition(self, run):
        """Do one repetition of a main-phase workload: ``run()``, returned.
        A variant may wrap it (a dashboard page open around it)."""
        return run()

    # -- operations on the main cluster ----------------------------------------------

    def execute_all(self):
        """Run ``a=1`` (or the closest equivalent) on every engine, blocking."""
        raise NotImplementedError

    def apply_one(self):
        """Call a no-op function on one engine and wait for its result."""
        raise NotImplementedError

    def run_tasks(self, n):
        """Submit ``n`` load-balanced no-op tasks, then wait until all finished."""
        raise NotImplementedError

    def run_tasks_bulk(self, n):
        """Submit ``n`` load-balanced no-op tasks in one call (the system's bulk
        submission), then wait until all finished."""
        raise NotImplementedError

    def clear_tasks(self):
        """Forget finished task results (not timed; keeps repetitions independent)."""

    def lb_map(self, n):
        """Load-balanced map of a no-op over ``range(n)``; return the results."""
        raise NotImplementedError

    def push(self, array, everywhere):
        """Store ``array`` as ``x`` on engine 0, or on every engine if ``everywhere``."""
        raise NotImplementedError

    def pull_one(self):
        """Fetch ``x`` back from engine 0 (pushed there just before); return it."""
        raise NotImplementedError

    def scatter(self, array):
        """Split ``array`` over all engines as ``x``."""
        raise NotImplementedError

    def gather(self):
        """Join the parts of ``x`` from all engines (after :meth:`scatter`); return it."""
        raise NotImplementedError

    def direct_map(self, n):
        """Non-load-balanced map of ``x ** 2`` over ``range(n)``; return the results."""
        raise NotImplementedError
