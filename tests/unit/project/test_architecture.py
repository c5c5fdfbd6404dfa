"""The shape of the code, checked over its source (``ast``; nothing is imported).

* **No import cycle** among the project's modules. Every import counts: module-level, inside a
  function, under ``TYPE_CHECKING``. A cycle hidden in a function is still a cycle.
* **Layers only point down**: ``schemas`` and ``infra`` at the bottom, ``models`` above them, the
  engine (the rest of ``streams``) above the models, the agents above the engine, and the
  worker's wiring (``streams.app``), the CLI and the tools at the top. A module may import its
  own layer or any layer below, never one above. Models do not import ``infra`` either (no
  Kafka, no ClickHouse in a model), and agents do not import each other.
* **No test for a concrete model class** (``isinstance``/``issubclass``/``type(x) is C``) outside
  that model's own file: the decider and the worker know models only through the protocol
  (``models.base.DemandModel``).
* **No module over 500 lines** outside the tests, except the ones listed in ``OVERSIZED`` (an
  allow-list that only shrinks: an entry that is no longer needed fails the test until removed).
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

from repricer.models.registry import MODELS

ROOT = Path(__file__).resolve().parents[3]
PACKAGES = ("schemas", "infra", "models", "streams", "agents")
INSTALLED = "repricer."  # the wheel installs the five folders as repricer.<folder>
SKIP_DIRS = {".venv", ".git", "build", "dist", "node_modules", "__pycache__", ".mypy_cache"}
MAX_LINES = 500

# ------------------------------------------------------------------------------------ layers

BOTTOM, MODELS_LAYER, ENGINE, AGENTS, TOP = range(5)
LAYER_NAMES = {
    BOTTOM: "schemas/infra",
    MODELS_LAYER: "models",
    ENGINE: "the engine (streams)",
    AGENTS: "agents",
    TOP: "wiring, CLI and tools",
}
# Modules of ``streams`` that sit at the top, beside the tools: the worker's wiring (it registers
# the agents) and the CLI. The tools (``streams.tools``: simulator, backtest, benches, demo, the
# trainer's command, ...) are at the top as a whole. Everything else in ``streams`` is the engine.
TOP_MODULES = {"streams.app"}
TOP_PACKAGES = ("streams.tools", "streams.cli")


def layer(module: str) -> int:
    """The layer of a project module (higher may import lower, never the reverse)."""
    top = module.split(".")[0]
    if top in ("schemas", "infra"):
        return BOTTOM
    if top == "models":
        return MODELS_LAYER
    if top == "agents":
        return AGENTS
    if module in TOP_MODULES or any(
        module == p or module.startswith(p + ".") for p in TOP_PACKAGES
    ):
        return TOP
    return ENGINE


# Modules over MAX_LINES today. Remove an entry when its split lands: the test fails on an entry
# that is no longer needed, so this list only shrinks. Never add one.
OVERSIZED: set[str] = set()  # empty since cli.py and backends.py were split


# ------------------------------------------------------------------------------ the graph


def project_modules(root: Path = ROOT) -> dict[str, Path]:
    """Dotted module name -> file, for every module of the project's packages."""
    out: dict[str, Path] = {}
    for pkg in PACKAGES:
        for path in sorted((root / pkg).rglob("*.py")):
            rel = path.relative_to(root)
            if SKIP_DIRS.intersection(rel.parts):
                continue
            parts = list(rel.with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            out[".".join(parts)] = path
    return out


def imports_of(
    module: str, source: str, modules: set[str], *, is_package: bool = False
) -> Iterator[tuple[str, int]]:
    """(imported project module, line) of every import in ``source``, wherever it is written.

    ``from pkg import name`` imports ``pkg.name`` when that is a module, else ``pkg`` itself.
    """

    def known(name: str) -> str | None:
        while name and name not in modules:
            name = name.rpartition(".")[0]
        return name or None

    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            for alias in node.names:
                name = alias.name.removeprefix(INSTALLED)
                if name.split(".")[0] in PACKAGES and (hit := known(name)):
                    yield hit, node.lineno
        elif isinstance(node, ast.ImportFrom):
            base = (node.module or "").removeprefix(INSTALLED)
            if node.level:
                here = module.split(".") if is_package else module.split(".")[:-1]
                here = here[: len(here) - node.level + 1]
                base = ".".join([*here, base] if base else here)
            if base.split(".")[0] not in PACKAGES:
                continue
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                hit = sub if sub in modules else known(base)
                if hit:
                    yield hit, node.lineno


def bare_imports(root: Path = ROOT) -> list[str]:
    """Imports of a project package by its folder name (``streams.x``) instead of its installed
    name (``repricer.streams.x``): they work from the checkout's root only, and load a second
    copy of the module beside the installed one."""
    out = []
    for top in (*PACKAGES, "tests"):
        for path in sorted((root / top).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.Import):
                    names = [a.name for a in node.names]
                elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
                    names = [node.module]
                else:
                    continue
                out += [
                    f"{path.relative_to(root)}:{node.lineno}: {n}"
                    for n in names
                    if n.split(".")[0] in PACKAGES
                ]
    return out


def import_graph(root: Path = ROOT) -> dict[str, dict[str, int]]:
    """module -> {imported module: first line importing it}."""
    mods = project_modules(root)
    names = set(mods)
    graph: dict[str, dict[str, int]] = {}
    for name, path in mods.items():
        edges: dict[str, int] = {}
        for target, line in imports_of(
            name, path.read_text(), names, is_package=path.name == "__init__.py"
        ):
            if target != name:
                edges.setdefault(target, line)
        graph[name] = edges
    return graph


def cycles(graph: dict[str, dict[str, int]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan), sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, {}):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return sorted(out)


def upward_imports(graph: dict[str, dict[str, int]]) -> list[str]:
    return [
        f"{src} ({LAYER_NAMES[layer(src)]}) imports {dst} ({LAYER_NAMES[layer(dst)]}) "
        f"at line {line}"
        for src, edges in sorted(graph.items())
        for dst, line in sorted(edges.items())
        if layer(dst) > layer(src)
    ]


def test_the_graph_sees_every_kind_of_import(tmp_path: Path) -> None:
    """Function-level, TYPE_CHECKING-only, relative and package imports are all edges."""
    for rel, text in {
        "schemas/__init__.py": "from schemas.events import Order\n",
        "schemas/events.py": "Order = 1\n",
        "models/__init__.py": "",
        "models/a.py": "def f():\n    from streams import b\n",
        "streams/__init__.py": "",
        "streams/b.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import models.a\n",
        "streams/c.py": "from . import b\nfrom .b import x\nfrom schemas import Order\n",
        "agents/__init__.py": "",
        "infra/__init__.py": "",
    }.items():
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(text)
    graph = import_graph(tmp_path)
    assert graph["models.a"] == {"streams.b": 2}
    assert graph["streams.b"] == {"models.a": 3}
    assert graph["streams.c"] == {"streams.b": 1, "schemas": 3}
    assert graph["schemas"] == {"schemas.events": 1}
    assert cycles(graph) == [["models.a", "streams.b"]]
    assert upward_imports(graph) == [
        "models.a (models) imports streams.b (the engine (streams)) at line 2"
    ]


def test_layers() -> None:
    assert [layer(m) for m in ("schemas.events", "infra.clickhouse", "models.decider")] == [
        BOTTOM,
        BOTTOM,
        MODELS_LAYER,
    ]
    assert [layer(m) for m in ("streams.settings", "agents.sink", "streams.cli")] == [
        ENGINE,
        AGENTS,
        TOP,
    ]
    assert layer("streams.tools.simulator") == TOP


def test_imports_use_the_installed_names() -> None:
    found = bare_imports()
    assert not found, "import these as repricer.<package> (see pyproject.toml):\n" + "\n".join(
        found
    )


def test_no_import_cycle() -> None:
    found = cycles(import_graph())
    assert not found, "modules that import each other (directly or around a loop):\n" + "\n".join(
        " <-> ".join(c) for c in found
    )


def test_imports_only_point_down() -> None:
    bad = upward_imports(import_graph())
    assert not bad, "imports against the layers:\n" + "\n".join(bad)


def test_models_import_no_infrastructure() -> None:
    """Models are numbers in, numbers out: no Kafka, no ClickHouse, no simulator. Where their
    data comes from is the caller's business (``streams.train`` feeds the LSTM trainer)."""
    bad = [
        f"{src} imports {dst} at line {line}"
        for src, edges in sorted(import_graph().items())
        if layer(src) == MODELS_LAYER
        for dst, line in sorted(edges.items())
        if dst.split(".")[0] not in ("models", "schemas")
    ]
    assert not bad, "\n".join(bad)


def test_agents_do_not_import_each_other() -> None:
    """What two agents share lives below them (``streams.worker``, ``streams.consumers``,
    ``streams.dead_letters``), not in one of them."""
    bad = [
        f"{src} imports {dst} at line {line}"
        for src, edges in sorted(import_graph().items())
        if src.startswith("agents.")
        for dst, line in sorted(edges.items())
        if dst.startswith("agents")
    ]
    assert not bad, "\n".join(bad)


def test_every_top_module_listed_exists() -> None:
    """The list of top-layer modules stays honest: a moved tool is taken off it."""
    assert TOP_MODULES <= set(project_modules()), TOP_MODULES - set(project_modules())


# ----------------------------------------------------------------------------- module size


def _source_files() -> list[Path]:
    out = []
    for path in ROOT.rglob("*.py"):
        rel = path.relative_to(ROOT)
        if SKIP_DIRS.intersection(rel.parts) or rel.parts[0] == "tests":
            continue
        out.append(path)
    return sorted(out)


def _lines(path: Path) -> int:
    return len(path.read_text().splitlines())


def test_no_module_over_500_lines() -> None:
    big = {str(p.relative_to(ROOT)): n for p in _source_files() if (n := _lines(p)) > MAX_LINES}
    new = {p: n for p, n in big.items() if p not in OVERSIZED}
    assert not new, f"modules over {MAX_LINES} lines (split them): {new}"
    done = sorted(OVERSIZED - set(big))
    assert not done, f"no longer over {MAX_LINES} lines (or gone): remove from OVERSIZED: {done}"


# ------------------------------------------------------------- no probing for model classes

_CHECKED_CALLS = {"isinstance", "issubclass"}


def _py_files() -> list[Path]:
    out = []
    for p in ROOT.rglob("*.py"):
        rel = p.relative_to(ROOT)
        if not SKIP_DIRS.intersection(rel.parts):
            out.append(p)
    return out


def _names(node: ast.AST) -> set[str]:
    """Class names an isinstance target mentions: ``C``, ``mod.C``, ``(A, B)``, ``A | B``."""
    if isinstance(node, ast.Name):
        return {node.id}
    if isinstance(node, ast.Attribute):
        return {node.attr}
    if isinstance(node, ast.Tuple | ast.List | ast.Set):
        return set().union(*(_names(e) for e in node.elts))
    if isinstance(node, ast.BinOp):
        return _names(node.left) | _names(node.right)
    return set()


def model_classes() -> dict[str, Path]:
    """Concrete demand models defined in models/: subclasses of ModelBase (transitively) and any
    other class implementing ``forecast`` and ``learn`` (not a Protocol)."""
    bases: dict[str, set[str]] = {}
    where: dict[str, Path] = {}
    implements: set[str] = set()
    for path in sorted((ROOT / "models").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if not isinstance(node, ast.ClassDef):
                continue
            names = set().union(*(_names(b) for b in node.bases)) if node.bases else set()
            if "Protocol" in names:
                continue
            bases[node.name], where[node.name] = names, path
            methods = {f.name for f in node.body if isinstance(f, ast.FunctionDef)}
            if {"forecast", "learn"} <= methods:
                implements.add(node.name)
    found = set(implements)
    grew = True
    while grew:
        more = {c for c, b in bases.items() if b & (found | {"ModelBase"})} - found
        found |= more
        grew = bool(more)
    return {c: where[c] for c in found}


def probes(source: str, classes: set[str]) -> list[tuple[int, str]]:
    """(line, class) of every isinstance/issubclass/``type(x) is C`` naming one of ``classes``."""
    hits = []
    for node in ast.walk(ast.parse(source)):
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id in _CHECKED_CALLS
            and len(node.args) == 2
        ):
            hits += [(node.lineno, c) for c in sorted(_names(node.args[1]) & classes)]
        elif (
            isinstance(node, ast.Compare)
            and isinstance(node.left, ast.Call)
            and isinstance(node.left.func, ast.Name)
            and node.left.func.id == "type"
        ):
            for comp in node.comparators:
                hits += [(node.lineno, c) for c in sorted(_names(comp) & classes)]
    return hits


def test_the_scan_finds_every_registered_model_class() -> None:
    classes = model_classes()
    registered = {e.target.partition(":")[2] for e in MODELS}
    assert registered <= set(classes), registered - set(classes)
    assert "ModelDecider" not in classes and "Elasticity" not in classes


def test_the_scan_catches_a_probe() -> None:
    src = (
        "if isinstance(m, RiverDemand): pass\n"
        "ok = isinstance(m, (int, river_model.LstmDemand))\n"
        "ok = isinstance(m, int | SeasonalPoisson)\n"
        "ok = type(m) is LastWindow\n"
        "ok = isinstance(m, dict)\n"
    )
    got = probes(src, set(model_classes()))
    assert got == [(1, "RiverDemand"), (2, "LstmDemand"), (3, "SeasonalPoisson"), (4, "LastWindow")]


def test_no_code_outside_a_model_file_tests_for_a_model_class() -> None:
    classes = model_classes()
    bad = []
    for path in _py_files():
        own = {c for c, p in classes.items() if p == path}
        for line, cls in probes(path.read_text(), set(classes) - own):
            bad.append(f"{path.relative_to(ROOT)}:{line}: {cls}")
    assert not bad, "ask the model through models.base.DemandModel instead:\n" + "\n".join(bad)
