"""The package layout: every module imports on its own (no import cycles), the light parts
stay light, and no module grows past what one sitting can read."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "sonicsearch"


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = sorted(_module_name(p) for p in PACKAGE.rglob("*.py") if p.name != "__main__.py")


def _fresh_import(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120)


def test_every_module_imports_alone():
    # One interpreter per module would take minutes; instead each module is imported first
    # in its own clean sys.modules state, which is what exposes a cycle.
    code = (
        "import importlib, sys\n"
        f"mods = {MODULES!r}\n"
        "bad = []\n"
        "base = set(sys.modules)\n"
        "for m in mods:\n"
        "    for k in [k for k in sys.modules if k.startswith('sonicsearch') and k not in base]:\n"
        "        del sys.modules[k]\n"
        "    try:\n"
        "        importlib.import_module(m)\n"
        "    except Exception as e:\n"
        "        bad.append(f'{m}: {type(e).__name__}: {e}')\n"
        "print('\\n'.join(bad))\n"
        "sys.exit(1 if bad else 0)\n"
    )
    proc = _fresh_import(code)
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.parametrize("module,heavy", [
    ("sonicsearch", ("faiss", "torchvision")),
    ("sonicsearch.audio", ("faiss", "torchvision")),
])
def test_light_modules_do_not_pull_heavy_ones(module, heavy):
    proc = _fresh_import(f"import sys, {module}; print(' '.join(m for m in {heavy!r} "
                         "if m in sys.modules))")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == ""


def test_modules_stay_readable():
    long = {str(p.relative_to(PACKAGE)): n for p in PACKAGE.rglob("*.py")
            if (n := len(p.read_text().splitlines())) > 420}
    assert not long, f"split these modules: {long}"


def test_long_functions_say_why():
    import ast

    unexplained = []
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                length = node.end_lineno - node.lineno + 1
                if length > 60 and "Long:" not in (ast.get_docstring(node) or ""):
                    unexplained.append(f"{path.relative_to(PACKAGE)}:{node.name} ({length})")
    assert not unexplained, f"split these or say why (Long: ...): {unexplained}"
