"""Load a script of benchmarks/ as a module, for the tests that run it in process."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"


def load_benchmark(name: str):
    """``benchmarks/NAME.py`` imported as ``bench_NAME`` (registered in ``sys.modules``, so
    its dataclasses resolve; ``benchmarks/`` on ``sys.path`` for its sibling imports)."""
    if str(BENCH) not in sys.path:
        sys.path.insert(0, str(BENCH))
    spec = importlib.util.spec_from_file_location(f"bench_{name}", BENCH / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module
