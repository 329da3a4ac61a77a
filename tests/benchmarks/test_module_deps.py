"""benchmarks/module_deps.py on a tiny package whose cycles and imports are known."""

from __future__ import annotations

import ast
from pathlib import Path

from bench_scripts import load_benchmark

deps = load_benchmark("module_deps")

FILES = {
    "__init__.py": "from fake.a import thing\n",
    "a.py": "import os\n\nfrom fake import b\n\nthing = 1\n",
    "b.py": "from fake.a import thing\n\n\ndef later():\n    from fake.c import _hidden\n"
            "    import json\n    return _hidden, json\n",
    "c.py": "from typing import TYPE_CHECKING\n\nif TYPE_CHECKING:\n    from fake.d import T\n"
            "\n_hidden = 2\n",
    "d.py": "from .c import _hidden\n\nT = int\n",
    "stage/__init__.py": "",
    "stage/low.py": "from ..cli import app\nfrom . import other\n",
    "stage/other.py": "",
    "cli/__init__.py": "app = object()\n",
    "serve/__init__.py": "import fake.cli\n",
}


def _tree(root: Path) -> Path:
    for name, body in FILES.items():
        path = root / "fake" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(body)
    return root


def test_finds_the_known_cycle_function_imports_and_upward_ones(tmp_path):
    report = deps.analyse(_tree(tmp_path), "fake")
    assert len(report.modules) == 10
    assert report.cycles == [["fake.a", "fake.b"]]
    assert [(i.source, i.target, i.line, i.private) for i in report.of("function")] == [
        ("fake.b", "fake.c", 5, ("_hidden",))]
    assert report.external_function_imports == 1  # `import json` inside later()
    assert report.runtime_cycles == [["fake.a", "fake.b"]]  # b -> c does not close a loop
    assert [(i.source, i.target) for i in report.of("type")] == [("fake.c", "fake.d")]
    assert report.typed_cycles == [["fake.a", "fake.b"], ["fake.c", "fake.d"]]
    assert sorted((i.source, i.target) for i in report.upward) == [
        ("fake.serve", "fake.cli"), ("fake.stage.low", "fake.cli")]
    assert sorted((i.source, i.private) for i in report.private) == [
        ("fake.b", ("_hidden",)), ("fake.d", ("_hidden",))]
    # relative imports resolve; `from . import other` is the submodule, not the package
    low = {i.target for i in report.imports if i.source == "fake.stage.low"}
    assert low == {"fake.cli", "fake.stage.other"}


def test_command_line_markdown_and_strict(tmp_path, capsys):
    root = _tree(tmp_path / "checkout")
    out = tmp_path / "deps.md"
    assert deps.main(["--root", str(root), "--package", "fake", "--markdown", str(out)]) == 0
    table = out.read_text()
    assert "| stage | modules |" in table
    assert "- cycle: `a` <-> `b`" in table
    assert "- upward: `stage.low`:1 imports `cli`" in table
    assert "| cycles (module level) | 1 |" in table
    assert deps.main(["--root", str(root), "--package", "fake", "--strict"]) == 1
    assert "function-level imports: 1" in capsys.readouterr().out
    (root / "fake" / "b.py").write_text("")
    (root / "fake" / "d.py").write_text("")
    (root / "fake" / "stage" / "low.py").write_text("")
    (root / "fake" / "serve" / "__init__.py").write_text("")
    assert deps.main(["--root", str(root), "--package", "fake", "--strict"]) == 0


ROOT = Path(deps.__file__).resolve().parents[1]


def test_the_package_has_no_upward_import_nor_private_one():
    report = deps.analyse(ROOT)
    assert len(report.modules) > 50
    assert not report.upward, [f"{i.source}:{i.line} -> {i.target}" for i in report.upward]
    assert not report.private, [f"{i.source}:{i.line} takes {i.private} from {i.target}"
                                for i in report.private]


def test_benchmarks_take_no_private_name_from_the_package():
    taken = [f"{path.name}:{node.lineno} {alias.name}"
             for path in sorted((ROOT / "benchmarks").glob("*.py"))
             for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
             if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("sonicsearch")
             for alias in node.names
             if alias.name.startswith("_") and not alias.name.startswith("__")]
    assert not taken, taken
