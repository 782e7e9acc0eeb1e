"""Runs the workloads on every system, round-robin, within time limits.

Each system gets a worker thread of its own that makes all of its calls,
so a call that hangs can be abandoned after its timeout: the runner then
records the timeout, stops that system's clusters (which ends the hung
call) and starts its main cluster again for the next workload.
"""
import concurrent.futures
import queue
import threading
import time
import traceback

#: Seconds a system may take to start its main cluster (at least: two more
#: per engine beyond 90), and to stop everything.
START_TIMEOUT = 180
STOP_TIMEOUT = 90


class CallTimeout(Exception):
    """A call given to :meth:`Worker.call` did not finish in time."""


class Worker:
    """A daemon thread running the calls given to :meth:`call`, one at a time."""

    def __init__(self, name):
        self._queue = queue.Queue()
        self._thread = threading.Thread(target=self._loop, name=f"bench-{name}", daemon=True)
        self._thread.start()

    def _loop(self):
        while True:
            func, future = self._queue.get()
            if func is None:
                return
            if future.set_running_or_notify_cancel():
                try:
                    future.set_result(func())
                except BaseException as exc:  # handed to the caller
                    future.set_exception(exc)

    def call(self, func, timeout):
        """``func()`` in this worker's thread; :class:`CallTimeout` after ``timeout`` s."""
        future = concurrent.futures.Future()
        self._queue.put((func, future))
        try:
            return future.result(timeout=max(timeout, 0.01))
        except concurrent.futures.TimeoutError:
            if future.done():  # the call itself raised TimeoutError
                raise
            raise CallTimeout(f"no answer within {timeout:.0f} s") from None

    def retire(self):
        """Let the thread end after what it is doing (it may be stuck: it is a daemon)."""
        self._queue.put((None, None))


def short_error(exc):
    """``Type: message`` on one line, at most 120 characters."""
    text = f"{type(exc).__name__}: {exc}".strip().splitlines()
    text = text[0] if text else type(exc).__name__
    return text if len(text) <= 120 else text[:117] + "..."


class Slot:
    """One system and its worker, with the state of its main cluster."""

    def __init__(self, system):
        self.system = system
        self.worker = Worker(system.name)
        self.up = False
        self.down_reason = None

    def call(self, func, timeout):
        return self.worker.call(func, timeout)

    def stop(self, timeout=STOP_TIMEOUT):
        """Stop everything this system started; bounded (a stuck stop is left to
        the final cleanup, which kills leftover processes by pid)."""
        self.up = False
        helper = Worker(f"{self.system.name}-stop")
        try:
            helper.call(self.system.stop, timeout)
        except Exception as exc:
            return short_error(exc)
        finally:
            helper.retire()
        return None

    def replace_worker(self):
        self.worker.retire()
        self.worker = Worker(self.system.name)


class Runner:
    """Runs ``workloads`` on ``systems`` (System instances) with ``params``.

    ``results[metric key][system name]`` collects ``samples`` (numbers) and
    ``errors`` (short messages); ``log`` receives progress lines.
    """

    def __init__(self, systems, workloads, params, repeat, deadline, log=print):
        self.slots = [Slot(s) for s in systems]
        self.workloads = workloads
        self.params = params
        self.repeat = repeat
        self.deadline = deadline
        self.log = log
        self.results = {m.key: {s.name: {"samples": [], "errors": []} for s in systems}
                        for w in workloads for m in w.metrics}

    # -- bookkeeping ---------------------------------------------------------------------

    def _record_error(self, workload, slot, message):
        for metric in workload.metrics:
            errors = self.results[metric.key][slot.system.name]["errors"]
            if message not in errors:
                errors.append(message)

    def _remaining(self):
        return self.deadline - time.monotonic()

    # -- phases ----------------------------------------------------------------------------

    def run(self):
        """Run every phase; always stops every system (also on Ctrl-C)."""
        try:
            for phase in ("startup", "main", "memory"):
                chosen = [w for w in self.workloads if w.phase == phase]
                if not chosen:
                    continue
                if phase == "main":
                    for slot in self.slots:
                        self._start_main(slot)
                for workload in chosen:
                    self._run_workload(workload)
                if phase == "main":
                    self.stop_all()
        finally:
            self.stop_all()
        return self.results

    def stop_all(self):
        """Stop every system (bounded); returns nothing, logs failures."""
        for slot in self.slots:
            error = slot.stop()
            if error:
                self.log(f"  {slot.system.name}: stop failed: {error}")

    def _start_main(self, slot):
        if self._remaining() < 1:
            slot.down_reason = "skipped: --timeout reached"
            return
        timeout = min(max(START_TIMEOUT, 2 * self.params["engines"]), self._remaining())
        self.log(f"starting {slot.system.name} with {self.params['engines']} engines")
        try:
            slot.call(lambda: slot.system.start(self.params["engines"]), timeout)
            slot.up, slot.down_reason = True, None
        except CallTimeout:
            slot.down_reason = f"start timed out after {timeout:.0f} s"
            slot.stop()
            slot.replace_worker()
        except Exception as exc:
            slot.down_reason = f"start failed: {short_error(exc)}"
            if self.params.get("verbose"):
                traceback.print_exception(exc)
            else:
                # the rest of the message: a launcher's ends with the tail of
                # the log, which the cluster's clean-up may remove
                for line in str(exc).splitlines()[1:]:
                    self.log(f"    {line}")
            slot.stop()
        if slot.down_reason:
            self.log(f"  {slot.system.name}: {slot.down_reason}")

    def _run_workload(self, workload):
        reps = workload.reps(self.params, self.repeat)
        failed = set()
        for rep in range(reps):
            # rotate the order every repetition so no system always goes first
            shift = rep % len(self.slots)
            for slot in self.slots[shift:] + self.slots[:shift]:
                if slot.system.name in failed:
                    continue
                if workload.phase == "main" and not slot.up:
                    self._record_error(workload, slot, slot.down_reason or "not running")
                    failed.add(slot.system.name)
                    continue
                if not self._run_once(workload, slot, rep, reps):
                    failed.add(slot.system.name)

    def _run_once(self, workload, slot, rep, reps):
        name = slot.system.name
        remaining = self._remaining()
        if remaining < 1:
            self._record_error(workload, slot, "skipped: --timeout reached")
            return False
        timeout = min(workload.timeout, remaining)
        started = time.monotonic()
        try:
            system = slot.system
            run = lambda: workload.run(system, self.params)  # noqa: E731
            values = slot.call((lambda: system.repetition(run)) if workload.phase == "main"
                               else run, timeout)
        except CallTimeout:
            self._record_error(workload, slot, f"timeout after {timeout:.0f} s")
            self.log(f"  {workload.key} {name} rep {rep + 1}/{reps}: timeout after {timeout:.0f} s")
            self._recover(slot, workload)
            return False
        except Exception as exc:
            message = short_error(exc)
            self._record_error(workload, slot, message)
            self.log(f"  {workload.key} {name} rep {rep + 1}/{reps}: error: {message}")
            if self.params.get("verbose"):
                traceback.print_exception(exc)
            return False
        for key, value in values.items():
            if value is not None:
                self.results[key][name]["samples"].append(value)
        shown = ", ".join(f"{k}={v:.4g}" for k, v in values.items() if v is not None)
        self.log(f"  {workload.key} {name} rep {rep + 1}/{reps} "
                 f"({time.monotonic() - started:.1f} s): {shown}")
        return True

    def _recover(self, slot, workload):
        """After a timeout: stop the system (ending the hung call), then restart
        its main cluster when the phase needs it."""
        slot.stop()
        slot.replace_worker()
        if workload.phase == "main" and self._remaining() > 1:
            self._start_main(slot)
