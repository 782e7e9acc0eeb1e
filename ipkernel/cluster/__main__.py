"""``python -m ipkernel.cluster``: the same as the ``ipcluster`` command."""
from ipkernel.cluster.app import run

if __name__ == "__main__":
    run()
