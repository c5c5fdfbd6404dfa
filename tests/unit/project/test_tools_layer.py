"""The tools (streams/tools/) sit above the engine: nothing the worker runs imports them, and
every tool module stays within the size limit."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
ALLOWED = "streams/cli/"  # the commands


def _imports(path: Path) -> set[str]:
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            out.add(node.module)
            out.update(f"{node.module}.{a.name}" for a in node.names)
    return out


def test_nothing_below_the_tools_imports_them() -> None:
    offenders = []
    for pkg in ("streams", "agents", "models", "schemas", "infra"):
        for path in sorted((ROOT / pkg).rglob("*.py")):
            rel = path.relative_to(ROOT).as_posix()
            if rel.startswith("streams/tools/") or rel.startswith(ALLOWED):
                continue
            bad = sorted(
                m for m in _imports(path) if m.removeprefix("repricer.").startswith("streams.tools")
            )
            if bad:
                offenders.append(f"{rel}: {', '.join(bad)}")
    assert not offenders, offenders


def test_tool_modules_are_at_most_500_lines() -> None:
    long = {
        p.relative_to(ROOT).as_posix(): n
        for p in (ROOT / "streams" / "tools").rglob("*.py")
        if (n := len(p.read_text().splitlines())) > 500
    }
    assert not long, long
