"""Progress bars for long blocking calls (``map``, ``barrier``, parallel functions).

A bar (tqdm) appears only when all of these hold:

* the client's ``progress`` attribute is true (the default),
* the environment variable ``IPKERNEL_PROGRESS`` is not ``0``/``false``/``no``/``off``,
* standard error is a terminal, or the code runs in a Jupyter kernel (then
  tqdm's notebook bar is used),
* and the call has lasted more than :data:`DELAY` seconds.

A map can only report progress if it is done in pieces, so a blocking map
that may show a bar is split into a few consecutive *chunks* (see
:func:`plan_chunks`); each chunk is an ordinary map over all the targets,
and the bar advances as chunks complete.
"""
import os
import sys

__all__ = ["DELAY", "MAX_CHUNKS", "ENV_VAR", "enabled_by_environment", "stderr_is_terminal",
           "stream", "in_notebook", "wanted", "plan_chunks", "slice_sequences", "bar"]

#: Seconds a call must last before its bar is drawn.
DELAY = 1.0
#: Least seconds between two redraws of a bar.
MIN_INTERVAL = 0.1
#: The most chunks a map is split into.
MAX_CHUNKS = 8
#: Set to 0 to switch progress bars off.
ENV_VAR = "IPKERNEL_PROGRESS"

_OFF_WORDS = ("0", "false", "no", "off")


def enabled_by_environment():
    """False when ``$IPKERNEL_PROGRESS`` switches progress bars off."""
    return os.environ.get(ENV_VAR, "").strip().lower() not in _OFF_WORDS


def stream():
    """Where bars are drawn: the current ``sys.stderr``."""
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


def wanted(setting):
    """Whether a call may show a bar, given the client's ``progress`` setting."""
    return (bool(setting) and enabled_by_environment()
            and (stderr_is_terminal() or in_notebook()))


def plan_chunks(n_items, n_engines, max_chunks=MAX_CHUNKS):
    """Split ``range(n_items)`` into consecutive ``(start, stop)`` chunks.

    Every chunk holds at least ``n_engines`` items (so each engine gets work
    in every chunk) and at most ``max_chunks`` chunks are made; sizes differ
    by at most one, larger chunks first.  A single chunk means "do not split".
    """
    if n_items <= 0:
        return [(0, max(n_items, 0))]
    count = min(max_chunks, n_items // max(n_engines, 1))
    if count < 2:
        return [(0, n_items)]
    size, extra = divmod(n_items, count)
    chunks, start = [], 0
    for k in range(count):
        stop = start + size + (k < extra)
        chunks.append((start, stop))
        start = stop
    return chunks


def slice_sequences(sequences, start, stop):
    """The items ``start:stop`` of each sequence, as a list of sequences."""
    return [seq[start:stop] for seq in sequences]


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

    The bar is drawn on standard error only once :data:`DELAY` seconds have
    passed, and is removed when closed.
    """
    if not enabled:
        return _NoBar()
    if in_notebook():
        from tqdm.auto import tqdm
    else:
        from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit=unit, delay=DELAY, leave=False, file=stream(),
                mininterval=MIN_INTERVAL, dynamic_ncols=True)
