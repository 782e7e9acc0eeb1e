"""``python -m ipkernel.engine``: the same as the ``ipengine`` command."""
from ipkernel.engine.app import run

if __name__ == "__main__":
    run()
