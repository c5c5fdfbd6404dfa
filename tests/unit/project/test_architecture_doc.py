"""ARCHITECTURE.md names every module of the engine's packages (tools are listed by their own
package docstrings), and the files its recipes point to exist."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
DOC = (ROOT / "ARCHITECTURE.md").read_text()


def test_every_module_is_named() -> None:
    missing = [
        str(path.relative_to(ROOT))
        for pkg in ("schemas", "infra", "models", "streams", "agents")
        for path in sorted((ROOT / pkg).rglob("*.py"))
        if path.name != "__init__.py"
        and "tools" not in path.relative_to(ROOT).parts
        and f"`{path.name}`" not in DOC
    ]
    assert not missing, f"ARCHITECTURE.md does not name: {missing}"


def test_the_paths_it_points_to_exist() -> None:
    paths = set(re.findall(r"`((?:schemas|infra|models|streams|agents|tests)/[\w/.]+)`", DOC))
    assert len(paths) >= 10
    missing = sorted(p for p in paths if not (ROOT / p).exists())
    assert not missing, f"ARCHITECTURE.md points to missing files: {missing}"
