"""Side-by-side benchmarks of ipkernel, ipyparallel and dask.distributed.

Run ``python -m bench --engines 2`` from the repository root; see
``bench/README.md``.
"""
