"""Import modules of the repository's ``bench/`` folder in tests.

``bench/`` is a top-level folder of the repository, not an installed
package: it is registered by path, so the repository root need not be on
``sys.path``.
"""
import importlib
import importlib.util
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BENCH_DIR = ROOT / "bench"


def load(name):
    """Import ``name`` (``"bench"`` or ``"bench.<module>"``) from ``bench/``."""
    if "bench" not in sys.modules:
        spec = importlib.util.spec_from_file_location(
            "bench", BENCH_DIR / "__init__.py", submodule_search_locations=[str(BENCH_DIR)])
        module = importlib.util.module_from_spec(spec)
        sys.modules["bench"] = module
        spec.loader.exec_module(module)
    return importlib.import_module(name)
