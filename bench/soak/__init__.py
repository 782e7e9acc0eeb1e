"""``python -m bench.soak``: a long run of mixed load with random engine kills.

Not a test: it reports latency percentiles, errors by kind, answers lost or
delivered twice (which must be zero), kills and restarts, and the
controller's memory over time (see bench/README.md, "Soak").
"""
