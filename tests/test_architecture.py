"""The layering of docs/architecture.md, enforced: every ``semzip`` import (module-level or inside a function, so
a cycle cannot hide in a function body) goes to a lower layer or stays inside its own package, and no group of
modules imports each other in a cycle. Adding a package means adding it to LAYERS and to the document."""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src" / "semzip"
DOC = Path(__file__).resolve().parents[1] / "docs" / "architecture.md"

LAYERS: list[tuple[str, ...]] = [  # bottom first; the same list, with one paragraph each, in docs/architecture.md
    ("errors",),
    ("_version", "_optional", "cache", "progress"),
    ("format",),
    ("entropy", "sparse"),
    ("data", "outputs"),
    ("models",),
    ("codecs",),
    ("query",),
    ("archive",),
    ("api",),
    ("scale", "eval"),
    ("train",),
    ("cli",),
]
RANK = {unit: i for i, units in enumerate(LAYERS) for unit in units}


def _modules() -> dict[str, Path]:
    out = {}
    for f in SRC.rglob("*.py"):
        parts = f.relative_to(SRC.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out[name] = f
    return out


def _imports(modules: dict[str, Path]) -> dict[str, set[str]]:
    """module -> the semzip modules it imports (``from semzip.x import y`` counts ``semzip.x.y`` if that is a
    module, else ``semzip.x``)."""

    def resolve(name: str) -> str:
        while name and name not in modules:
            name = name.rpartition(".")[0]
        return name

    edges: dict[str, set[str]] = defaultdict(set)
    for mod, path in modules.items():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            targets = []
            if isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").startswith("semzip"):
                targets = [f"{node.module}.{a.name}" if f"{node.module}.{a.name}" in modules else node.module
                           for a in node.names]
            elif isinstance(node, ast.Import):
                targets = [a.name for a in node.names if a.name.startswith("semzip")]
            assert not (isinstance(node, ast.ImportFrom) and node.level), f"{path}: use absolute semzip imports"
            edges[mod] |= {t for t in map(resolve, targets) if t and t != mod}
    return edges


def _unit(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def test_every_package_has_a_layer_and_a_paragraph():
    units = {_unit(m) for m in _modules()} - {"__init__"}
    assert units <= set(RANK), f"not in LAYERS (and docs/architecture.md): {sorted(units - set(RANK))}"
    doc = DOC.read_text(encoding="utf-8")
    missing = [u for u in RANK if f"`{u}`" not in doc]
    assert not missing, f"docs/architecture.md does not describe {missing}"


def _upward(edges: dict[str, set[str]]) -> list[str]:
    out = []
    for mod, targets in edges.items():
        src = _unit(mod)
        for t in targets:
            dst = _unit(t)
            if dst == src or dst == "__init__":  # inside a package; the root only re-exports foundations
                continue
            if src == "__init__" and RANK[dst] <= 1:
                continue
            if src == "__init__" or RANK[dst] >= RANK[src]:
                out.append(f"{mod} -> {t}")
    return out


def _cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Groups of modules that import each other (Tarjan's strongly connected components). A package's
    ``__init__`` importing its own modules is how it re-exports them, not an edge of a cycle."""
    graph = {m: {t for t in ts if not t.startswith(m + ".")} for m, ts in edges.items()}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    cycles = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                cycles.append(sorted(comp))

    for m in sorted(graph):
        if m not in index:
            visit(m)
    return cycles


def test_imports_only_go_down():
    upward = _upward(_imports(_modules()))
    assert not upward, "imports that go up or sideways in docs/architecture.md's layers:\n" + "\n".join(upward)


def test_no_import_cycles():
    assert _cycles(_imports(_modules())) == []


def test_the_checks_catch_a_violation():
    """Neither check is vacuous: an upward and a sideways import, and a cycle hidden three modules deep."""
    assert _upward({"semzip.format.container": {"semzip.codecs.collection"},
                    "semzip.eval.run": {"semzip.scale.stream", "semzip.api", "semzip.eval.metrics"},
                    "semzip.cache": {"semzip.errors"}}) == [
        "semzip.format.container -> semzip.codecs.collection", "semzip.eval.run -> semzip.scale.stream"]
    ring = {"semzip.a.x": {"semzip.a.y"}, "semzip.a.y": {"semzip.a.z"}, "semzip.a.z": {"semzip.a.x"},
            "semzip.a": {"semzip.a.x"}}
    assert _cycles(ring) == [["semzip.a.x", "semzip.a.y", "semzip.a.z"]]


def test_the_public_api_is_reexported_lazily():
    """``semzip.compress_folder`` and friends work from the package, and ``import semzip`` still loads no
    backend (the API module loads on first use)."""
    import subprocess
    import sys

    code = ("import sys, semzip; assert 'semzip.api' not in sys.modules and 'torch' not in sys.modules; "
            "import semzip.api; assert semzip.compress_folder is semzip.api.compress_folder; "
            "assert all(getattr(semzip, n) is not None for n in semzip.__all__); "
            "assert set(semzip.__all__) <= set(dir(semzip))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False, timeout=120)
    assert r.returncode == 0, r.stderr
