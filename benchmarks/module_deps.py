"""Who imports whom inside the package, read from the source with ``ast`` (nothing is run).

For every module of ``sonicsearch/`` it lists the package modules it imports at module level
and, counted apart, those it imports inside a function (a deferred import hides a
dependency). It then flags:

* import cycles: strongly connected components of the module-level graph, then of the graph
  that also counts function-level imports (a loop closed at run time), then of the one that
  also counts type-only imports (two modules that know each other's types);
* upward imports: a module outside the top layers (``cli/``, ``serve/``) importing one of
  them, or ``serve/`` importing ``cli/``;
* private names imported across modules (``from sonicsearch.audio import _resample``).

Imports under ``if TYPE_CHECKING:`` are type-only and counted apart. Importing
``a.b.c`` also runs ``a/__init__`` and ``a/b/__init__``; those implicit edges are not drawn.

    python benchmarks/module_deps.py                       # this checkout
    python benchmarks/module_deps.py --markdown deps.md    # tables in a file ('-': stdout)
    git worktree add /tmp/before 8be2143 && python benchmarks/module_deps.py --root /tmp/before
    python benchmarks/module_deps.py --strict              # exit 1 on a cycle or upward import
"""

from __future__ import annotations

import argparse
import ast
import sys
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

TOP_LAYERS = ("cli", "serve")  # the highest first: serve may not import cli either


@dataclass(frozen=True)
class Import:
    """One import statement's edge to a module of the package."""

    source: str
    target: str
    line: int
    where: str  # "module", "function" or "type"
    private: tuple[str, ...] = ()  # underscore names taken from another module


@dataclass
class Report:
    package: str
    modules: list[str]
    imports: list[Import]
    external_function_imports: int = 0
    cycles: list[list[str]] = field(default_factory=list)
    runtime_cycles: list[list[str]] = field(default_factory=list)
    typed_cycles: list[list[str]] = field(default_factory=list)

    def of(self, where: str) -> list[Import]:
        return [i for i in self.imports if i.where == where]

    @property
    def upward(self) -> list[Import]:
        return [i for i in self.imports if i.where != "type"
                and _layer(i.target, self.package) > _layer(i.source, self.package)]

    @property
    def private(self) -> list[Import]:
        return [i for i in self.imports if i.private]


def _module_name(path: Path, base: Path) -> str:
    parts = path.relative_to(base).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _layer(module: str, package: str) -> int:
    parts = module.split(".")
    stage = parts[1] if len(parts) > 1 and parts[0] == package else ""
    if stage == "__main__":
        return len(TOP_LAYERS) + 1
    return len(TOP_LAYERS) - TOP_LAYERS.index(stage) if stage in TOP_LAYERS else 0


def _resolve(name: str, modules: set[str]) -> str | None:
    """The longest package module that ``name`` (a dotted path) is or lies inside."""
    while name:
        if name in modules:
            return name
        name = name.rpartition(".")[0]
    return None


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _import_nodes(tree: ast.Module):
    """Every import statement with where it sits: module level, in a function, type-only."""
    stack: list[tuple[ast.AST, str]] = [(tree, "module")]
    while stack:
        node, where = stack.pop()
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.Import | ast.ImportFrom):
                yield child, where
            elif isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda):
                stack.append((child, "function"))
            elif isinstance(child, ast.If) and _is_type_checking(child) and where == "module":
                stack.append((ast.Module(body=child.body, type_ignores=[]), "type"))
                stack.extend((c, where) for c in child.orelse)
            else:
                stack.append((child, where))


def _edges(node: ast.Import | ast.ImportFrom, module: str, is_package: bool,
           modules: set[str]) -> list[tuple[str, tuple[str, ...]]]:
    """The package modules one statement imports, each with the private names it takes."""
    if isinstance(node, ast.Import):
        return [(t, ()) for a in node.names if (t := _resolve(a.name, modules))]
    base = node.module or ""
    if node.level:
        anchor = module.split(".")[: len(module.split(".")) - node.level + int(is_package)]
        base = ".".join(anchor + ([base] if base else []))
    out: dict[str, list[str]] = defaultdict(list)
    for alias in node.names:
        target = _resolve(f"{base}.{alias.name}", modules)
        if target == f"{base}.{alias.name}":  # `from pkg import submodule`
            out.setdefault(target, [])
        elif (target := _resolve(base, modules)) is not None:
            private = alias.name.startswith("_") and not alias.name.startswith("__")
            out[target].extend([alias.name] if private else [])
    return [(t, tuple(names)) for t, names in out.items()]


def _strongly_connected(graph: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's components with more than one module, or a module importing itself."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1 or v in graph.get(v, ()):
                found.append(sorted(component))

    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10 * len(graph) + 100))
    for v in sorted(graph):
        if v not in index:
            visit(v)
    return sorted(found)


def analyse(root: Path, package: str = "sonicsearch") -> Report:
    """Read ``root/package`` and return its internal imports, cycles and findings."""
    base = root / package
    if not base.is_dir():
        raise SystemExit(f"error: no package folder {base}")
    paths = {_module_name(p, root): p for p in sorted(base.rglob("*.py"))}
    modules = set(paths)
    imports: list[Import] = []
    external = 0
    for module, path in sorted(paths.items()):
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for node, where in _import_nodes(tree):
            edges = _edges(node, module, path.name == "__init__.py", modules)
            external += where == "function" and not edges
            imports += [Import(module, t, node.lineno, where, private) for t, private in edges
                        if t != module]
    imports.sort(key=lambda i: (i.source, i.line, i.target))
    report = Report(package, sorted(modules), imports, external)
    report.cycles = _strongly_connected(_graph(imports, ("module",)))
    report.runtime_cycles = _strongly_connected(_graph(imports, ("module", "function")))
    report.typed_cycles = _strongly_connected(_graph(imports, ("module", "function", "type")))
    return report


def _graph(imports: list[Import], kinds: tuple[str, ...]) -> dict[str, set[str]]:
    graph: dict[str, set[str]] = defaultdict(set)
    for i in imports:
        if i.where in kinds:
            graph[i.source].add(i.target)
    return graph


def _short(module: str, package: str) -> str:
    return module.removeprefix(package + ".") if module != package else package


def _stage(module: str, package: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else package


def summary(report: Report) -> dict[str, int]:
    return {"modules": len(report.modules),
            "module-level imports": len(report.of("module")),
            "function-level imports": len(report.of("function")),
            "function-level imports of outside packages": report.external_function_imports,
            "type-only imports": len(report.of("type")),
            "cycles (module level)": len(report.cycles),
            "cycles (counting function-level imports)": len(report.runtime_cycles),
            "cycles (counting type-only imports too)": len(report.typed_cycles),
            "upward imports": len(report.upward),
            "private names imported across modules": len(report.private)}


def text(report: Report) -> str:
    pkg = report.package
    lines = []
    for module in report.modules:
        mine = [i for i in report.imports if i.source == module]
        lines.append(_short(module, pkg))
        for where in ("module", "function", "type"):
            targets = sorted({_short(i.target, pkg) for i in mine if i.where == where})
            if targets:
                lines.append(f"    {where:8} {', '.join(targets)}")
    lines.append("")
    lines += _findings(report, lambda s: s)
    lines.append("")
    lines += [f"{k}: {v}" for k, v in summary(report).items()]
    return "\n".join(lines)


def _findings(report: Report, code) -> list[str]:
    pkg = report.package
    out: list[str] = []
    seen: list[list[str]] = []  # a wider graph's component already shown is not repeated
    for title, cycles in (("cycle", report.cycles),
                          ("cycle through function-level imports", report.runtime_cycles),
                          ("cycle through type-only imports", report.typed_cycles)):
        out += [f"{title}: {' <-> '.join(code(_short(m, pkg)) for m in c)}" for c in cycles
                if c not in seen]
        seen += cycles
    out += [f"upward: {code(_short(i.source, pkg))}:{i.line} imports {code(_short(i.target, pkg))}"
            for i in report.upward]
    out += [f"private: {code(_short(i.source, pkg))}:{i.line} takes "
            f"{', '.join(code(n) for n in i.private)} from {code(_short(i.target, pkg))}"
            for i in report.private]
    return out or ["no cycles, no upward imports, no private names across modules"]


def markdown(report: Report) -> str:
    pkg = report.package
    stages: dict[str, list[str]] = defaultdict(list)
    for m in report.modules:
        stages[_stage(m, pkg)].append(m)
    rows = ["| stage | modules | imports at module level | imports in functions (count) |",
            "| --- | ---: | --- | --- |"]
    for stage, members in sorted(stages.items()):
        mine = [i for i in report.imports if i.source in members]

        def targets(where: str, mine=mine, stage=stage) -> str:
            hits = [_stage(i.target, pkg) for i in mine if i.where == where]
            hits = [t for t in hits if t != stage]
            names = sorted(set(hits))
            return ", ".join(f"{t} ({hits.count(t)})" if where == "function" else t
                             for t in names) or "-"

        rows.append(f"| {stage} | {len(members)} | {targets('module')} | {targets('function')} |")
    out = [f"## `{pkg}`: imports between stages", "", *rows, "", "## Findings", ""]
    out += [f"- {line}" for line in _findings(report, lambda s: f"`{s}`")]
    out += ["", "## Counts", "", "| what | count |", "| --- | ---: |"]
    out += [f"| {k} | {v} |" for k, v in summary(report).items()]
    return "\n".join(out) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", type=Path, default=Path(__file__).resolve().parents[1],
                        help="the checkout to read (default: this one)")
    parser.add_argument("--package", default="sonicsearch")
    parser.add_argument("--markdown", nargs="?", const="-", metavar="FILE",
                        help="write tables in Markdown to FILE ('-' or nothing: stdout)")
    parser.add_argument("--strict", action="store_true",
                        help="exit 1 when there is a cycle or an upward import")
    args = parser.parse_args(argv)
    report = analyse(args.root.resolve(), args.package)
    if args.markdown is None:
        print(text(report))
    elif args.markdown == "-":
        print(markdown(report), end="")
    else:
        Path(args.markdown).write_text(markdown(report), encoding="utf-8")
        print(f"wrote {args.markdown}")
    return int(args.strict and bool(report.cycles or report.runtime_cycles or report.upward))


if __name__ == "__main__":
    sys.exit(main())
