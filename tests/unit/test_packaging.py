"""The wheel users install holds the whole project: every module of the five packages and the
data files the code opens at run time (the worker image installs it non-editable, where a module
missing from the wheel is an ImportError that an editable checkout never shows)."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("streams", "agents", "models", "schemas", "infra")
DATA = (
    "infra/clickhouse/schema.sql",
    "agents/dashboard.html",
    "models/artifacts/demand_lstm.onnx",
    "schemas/json/PriceChange.json",
)


def test_the_wheel_holds_every_module_and_its_data(tmp_path: Path) -> None:
    # built from a copy of the checkout's files (a build/ directory left by an earlier build
    # would otherwise hand its stale modules to the wheel)
    files = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT, check=True, capture_output=True, text=True,
    ).stdout.split()  # fmt: skip
    src = tmp_path / "src"
    for name in files:
        if (ROOT / name).is_file():
            (src / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, src / name)
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps",
         "-w", str(tmp_path), str(src)],
        check=True, capture_output=True, timeout=300,
    )  # fmt: skip
    (wheel,) = tmp_path.glob("repricer-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    tracked = [f for f in files if f.split("/")[0] in PACKAGES]
    modules = [p for p in tracked if p.endswith(".py")]
    assert len(modules) > 50
    missing = sorted(p for p in [*modules, *DATA] if p not in names)
    assert not missing, f"not in the wheel: {missing}"
    assert not [n for n in names if n.startswith("tests/")]
