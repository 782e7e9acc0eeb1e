"""Chunked maps and progress bars for long blocking calls (``map``, ``barrier``,
parallel functions, task maps).

**Chunks.**  A blocking multi-engine map is one call per engine; with
``chunksize=k`` it is sent as consecutive *chunks* of ``k`` items per engine
(see :func:`plan_map`), each one call over the engines.  Every engine still
gets exactly the items an unchunked map would give it (its one part of the
split by ``dist``), in order, only spread over several calls, so results,
order and which engine computes what are the same either way.  Whether a
map is chunked never depends on whether a bar is shown.  Task maps and task
barriers wait for their tasks in small batches (:func:`plan_batches`).

**Bars.**  A bar (tqdm) advances as the engines report how far a map got
(at most a few times a second, see ``ipkernel.engine.service.PROGRESS_EVERY``),
as chunks, batches or results arrive, and appears only when all of these hold:

* the client's ``progress`` attribute is true (the default),
* the environment variable ``IPKERNEL_PROGRESS`` is not ``0``/``false``/``no``/``off``,
* standard error is a terminal, or the code runs in a Jupyter kernel (there a
  widget when ipywidgets is installed, else a text bar: see :func:`bar_class`),
* and the call has lasted more than :data:`DELAY` seconds.
"""
import importlib
import math
import os
import sys

from ipkernel import mapping

__all__ = ["DELAY", "ENV_VAR", "gather_landing", "TASK_BATCHES", "MAX_BATCH", "enabled_by_environment", "stderr_is_terminal",
           "stream", "in_notebook", "widgets_available", "bar_class", "wanted",
           "check_chunksize", "may_chunk", "plan_map", "chunk_positions", "take",
           "plan_batches", "bar"]

#: Seconds a call must last before its bar is drawn.
DELAY = 1.0
#: Least seconds between two redraws of a bar.
MIN_INTERVAL = 0.1
#: Set to 0 to switch progress bars off.
ENV_VAR = "IPKERNEL_PROGRESS"

#: A task map or task barrier waits for its tasks in about this many batches ...
TASK_BATCHES = 20
#: ... of at most this many tasks each.
MAX_BATCH = 1000

_OFF_WORDS = ("0", "false", "no", "off")


# -- when a bar is shown, and which --------------------------------------------------------

def enabled_by_environment():
    """False when ``$IPKERNEL_PROGRESS`` switches progress bars off."""
    return os.environ.get(ENV_VAR, "").strip().lower() not in _OFF_WORDS


def stream():
    """Where text bars are drawn: the current ``sys.stderr``."""
    return sys.stderr


def stderr_is_terminal():
    """True when standard error (:func:`stream`) is an interactive terminal."""
    try:
        return bool(stream().isatty())
    except (AttributeError, ValueError):  # no stream, or a closed one
        return False


def in_notebook():
    """True when running inside a Jupyter (IPython) kernel."""
    if "ipykernel" not in sys.modules:
        return False
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    shell = get_ipython()
    return shell is not None and hasattr(shell, "kernel")


def widgets_available():
    """True when ipywidgets can be imported (tqdm's notebook bar needs it)."""
    try:
        importlib.import_module("ipywidgets")
    except ImportError:
        return False
    return True


def bar_class():
    """The tqdm class bars are made with.

    In a Jupyter kernel with ipywidgets installed: tqdm's widget bar
    (``tqdm.notebook``).  Anywhere else, a notebook without ipywidgets
    included: the text bar (``tqdm.std``), written to standard error.
    (``tqdm.auto`` would pick the widget bar without ipywidgets too, and warn
    "IProgress not found" instead of drawing it.)
    """
    if in_notebook() and widgets_available():
        from tqdm.notebook import tqdm
    else:
        from tqdm.std import tqdm
    return tqdm


def wanted(setting):
    """Whether a call may show a bar, given the client's ``progress`` setting."""
    return (bool(setting) and enabled_by_environment()
            and (stderr_is_terminal() or in_notebook()))


# -- the plan of a chunked map -------------------------------------------------------------

def check_chunksize(chunksize):
    """``chunksize`` if it is None or a positive int, else TypeError/ValueError."""
    if chunksize is None:
        return None
    if isinstance(chunksize, bool) or not isinstance(chunksize, int):
        raise TypeError(f"chunksize must be a positive int (items per engine call) or None, "
                        f"not {chunksize!r}")
    if chunksize < 1:
        raise ValueError(f"chunksize must be a positive int (items per engine call) or None, "
                         f"not {chunksize!r}")
    return chunksize


def _pieces(size, chunksize):
    """``(start, stop)`` pieces of ``chunksize`` items covering ``range(size)``."""
    return [(a, min(a + chunksize, size)) for a in range(0, size, chunksize)]


def plan_map(n_items, n_engines, chunksize):
    """The chunks of a blocking map of ``n_items`` over ``n_engines`` engines
    with ``chunksize`` items per engine call.

    Each chunk is the list, for engines ``0, 1, ...`` (in target order, those
    with nothing to do in it left off the end), of the ``(start, stop)``
    offsets of their piece within their own part of the unchunked split.
    One chunk means "one ordinary call".  In every chunk the engines' piece
    sizes differ by at most one, larger first, like the parts of any split,
    so a chunk is split over its engines exactly into those pieces.
    """
    n_engines = max(n_engines, 1)
    small, extra = divmod(max(n_items, 0), n_engines)
    sizes = [small + (e < extra) for e in range(n_engines)]
    pieces = [_pieces(size, chunksize) for size in sizes]
    chunks = [[engine[j] for engine in pieces if j < len(engine) and engine[j][1] > engine[j][0]]
              for j in range(max(len(p) for p in pieces))]
    return chunks or [[]]


def may_chunk(n_items, chunksize):
    """False when a map of ``n_items`` is one call whatever the number of engines."""
    return n_items > chunksize


def chunk_positions(n_items, n_engines, dist, chunk):
    """The positions in the mapped sequences of the items of ``chunk`` (a
    chunk of :func:`plan_map`), in the order a map over the chunk returns them."""
    parts = mapping.partitions(range(n_items), n_engines, dist)
    return mapping.join([parts[e][start:stop] for e, (start, stop) in enumerate(chunk)], dist)


def take(seq, positions):
    """The items of ``seq`` at ``positions``: a numpy array for a numpy array,
    else a list."""
    ndarray = sys.modules.get("numpy")
    if ndarray is not None and isinstance(seq, ndarray.ndarray):
        return seq[positions]
    if not isinstance(seq, (list, tuple, range, str, bytes, bytearray)):
        seq = list(seq)  # (indexing other sequences may not be by position)
    return [seq[i] for i in positions]


# -- task batches --------------------------------------------------------------------------

def plan_batches(n_tasks):
    """Consecutive ``(start, stop)`` batches of ``range(n_tasks)`` that a task
    map or barrier waits for one by one: about :data:`TASK_BATCHES` of them,
    of at most :data:`MAX_BATCH` tasks."""
    size = min(MAX_BATCH, max(1, math.ceil(n_tasks / TASK_BATCHES)))
    return [(a, min(a + size, n_tasks)) for a in range(0, n_tasks, size)]


# -- bars ----------------------------------------------------------------------------------

class _NoBar:
    """Stands in for a bar when none is shown."""

    def update(self, n=1):
        pass

    def close(self):
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def bar(total, desc, enabled, unit="it"):
    """A context-managed bar of ``total`` steps (a do-nothing one unless ``enabled``).

    The bar (of :func:`bar_class`) is drawn only once :data:`DELAY` seconds
    have passed; once drawn it stays, at its final count, when closed (a bar
    never drawn leaves nothing).  Its ``update`` may be called from the
    reactor thread.
    """
    if not enabled:
        return _NoBar()
    # miniters=1: steps differ in size, and tqdm's adaptive miniters would then
    # skip drawing some of them
    return bar_class()(total=total, desc=desc, unit=unit, delay=DELAY, leave=True,
                       file=stream(), mininterval=MIN_INTERVAL, miniters=1,
                       dynamic_ncols=True)


def gather_landing(deferreds, landed, give_up=None):
    """A Deferred of the results of ``deferreds``, in order, calling
    ``landed(k)`` (reactor thread) as the k-th fires.  The first failure
    fails it at once; then, or when it is cancelled (a timeout, Ctrl-C),
    ``give_up()`` is called and later outcomes are dropped."""
    from twisted.internet import defer

    results = [None] * len(deferreds)
    state = {"left": len(deferreds), "over": False}

    def end():
        state["over"] = True
        if give_up is not None:
            give_up()
    done = defer.Deferred(canceller=lambda _: end())

    def arrived(value, k):
        if not state["over"]:
            results[k] = value
            state["left"] -= 1
            landed(k)
            if not state["left"]:
                state["over"] = True
                done.callback(results)

    def failed(failure):
        if not state["over"]:
            end()
            done.errback(failure)
    for k, d in enumerate(deferreds):
        d.addCallbacks(arrived, failed, callbackArgs=(k,))
    if not deferreds:
        done.callback(results)
    return done
