"""``python -m ipkernel.controller``: the same as the ``ipcontroller`` command."""
from ipkernel.controller.app import run

if __name__ == "__main__":
    run()
