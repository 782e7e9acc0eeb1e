"""Which names a push may bind in an engine's namespace.

Shared by the engine (which enforces it, whatever path a push came by) and
the clients (which check early, before anything is serialised or sent).
"""
import keyword

#: Names a push must not bind, and why.
RESERVED = {
    "__builtins__": "the engine runs every later command with the built-in functions "
                    "it holds, so replacing it would break them all",
}


def check_push_names(namespace, method="push"):
    """Raise TypeError or ValueError, naming the key and the reason, unless
    every key of the dict ``namespace`` is a name a push may bind: a str that
    is a Python identifier, not a keyword, and not in :data:`RESERVED`."""
    if not isinstance(namespace, dict):
        raise TypeError(f"{method} takes a dict of names to values, "
                        f"not {type(namespace).__name__}")
    for key in namespace:
        if not isinstance(key, str):
            raise TypeError(f"{method}: the key {key!r:.80} is a {type(key).__name__}, but the "
                            f"names of a namespace are str; nothing was pushed")
        if not key.isidentifier() or keyword.iskeyword(key):
            raise ValueError(f"{method}: the key {key!r:.80} is not a Python identifier, so "
                             f"code on the engines could not use it as a name; nothing was "
                             f"pushed (use names such as 'x' or 'data_1', or push one dict "
                             f"that holds these keys)")
        if key in RESERVED:
            raise ValueError(f"{method}: the key {key!r} is refused: {RESERVED[key]}; "
                             f"nothing was pushed")
