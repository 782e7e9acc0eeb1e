"""The wire form of an engine batch (``RIEngine.apply_batch``).

A batch of many small applies would cost Foolscap tens of tokens per call
as nested copyables; here it travels as a few bytes objects (see
:mod:`ipkernel.framing`): the distinct functions and kwargs once, two
indexes per call, and every call's args packed together.  The outcomes
come back the same way.  Nothing is unpickled: the controller uses both
directions.
"""
from ipkernel import framing

#: Per-call status codes of the outcomes.
FAILED, OK, NOT_RUN = 0, 1, 2


def calls_to_wire(calls, encode):
    """``(shared, refs, args)`` for a list of ``(func, args, kwargs)``.

    ``encode(value)`` makes a Serialized of a value that is not one yet.
    Functions and kwargs are shared by identity: tasks of one map send
    their function once.
    """
    if not isinstance(calls, (list, tuple)):
        raise TypeError(f"apply_batch takes a list of (func, args, kwargs), "
                        f"not {type(calls).__name__}")
    shared, index, refs, args = [], {}, [], []

    def ref(value):
        key = id(value)
        if key not in index:
            index[key] = len(shared)
            shared.append(encode(value))
        return index[key]

    keep = []  # hold the originals so their ids stay unique while indexing
    for func, call_args, kwargs in calls:
        kwargs = {} if kwargs is None else kwargs
        keep.append((func, kwargs))
        refs += (ref(func), ref(kwargs))
        args.append(encode(call_args))
    return shared, framing.pack_ints(refs), framing.pack(args)


def calls_from_wire(shared, refs, args):
    """The list of ``(func, args, kwargs)`` Serialized triples of a wire batch."""
    indexes = framing.unpack_ints(refs)
    call_args = framing.unpack(args)
    if len(indexes) != 2 * len(call_args):
        raise ValueError(f"a batch of {len(call_args)} calls needs {2 * len(call_args)} "
                         f"indexes, not {len(indexes)}")
    if indexes and max(indexes) >= len(shared):
        raise ValueError("a batch call refers to a function or kwargs it does not carry")
    return [(shared[indexes[2 * k]], a, shared[indexes[2 * k + 1]])
            for k, a in enumerate(call_args)]


def outcomes_to_wire(outcomes):
    """``(status, times, values, errors)`` for ``apply_batch`` outcomes whose
    values are Serialized (ok) or ErrorRecords (failed)."""
    status, times, values, errors = [], [], [], []
    for ok, value, started, finished in outcomes:
        if ok is None:
            status.append(NOT_RUN)
            times += (0.0, 0.0)
            continue
        status.append(OK if ok else FAILED)
        times += (started, finished)
        (values if ok else errors).append(value)
    return (framing.pack_ints(status), framing.pack_floats(times), framing.pack(values),
            errors)


def outcomes_from_wire(status, times, values, errors):
    """The ``(ok, value, started, finished)`` list of :func:`outcomes_to_wire`'s output."""
    codes = framing.unpack_ints(status)
    stamps = framing.unpack_floats(times)
    ok_values = iter(framing.unpack(values))
    failures = iter(errors)
    if len(stamps) != 2 * len(codes):
        raise ValueError("a batch outcome has the wrong number of times")
    out = []
    try:
        for k, code in enumerate(codes):
            if code == NOT_RUN:
                out.append((None, None, None, None))
            elif code == OK:
                out.append((True, next(ok_values), stamps[2 * k], stamps[2 * k + 1]))
            else:
                out.append((False, next(failures), stamps[2 * k], stamps[2 * k + 1]))
    except StopIteration:
        raise ValueError("a batch outcome has fewer values than its status says") from None
    return out
