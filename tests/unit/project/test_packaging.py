"""The wheel users install holds the whole project: every module of the five packages and the
data files the code opens at run time, all under ``repricer/`` (the worker image installs it non-editable, where a module
missing from the wheel is an ImportError that an editable checkout never shows)."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
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
    # installed under the project's own name: streams/x.py is repricer/streams/x.py in the wheel
    missing = sorted(p for p in [*modules, *DATA] if f"repricer/{p}" not in names)
    assert not missing, f"not in the wheel: {missing}"
    tops = {n.split("/")[0] for n in names if not n.startswith("repricer-")}
    assert tops == {"repricer"}, f"top-level names besides repricer/ in the wheel: {tops}"


def test_every_folder_with_modules_is_a_listed_package() -> None:
    """pyproject.toml lists the packages (setuptools cannot find them under the mapped names):
    a new folder of modules must be listed there, or the wheel leaves it out."""
    import tomllib

    listed = set(
        tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]
    )
    folders = {
        "repricer." + path.parent.relative_to(ROOT).as_posix().replace("/", ".")
        for pkg in PACKAGES
        for path in (ROOT / pkg).rglob("*.py")
        if "__pycache__" not in path.parts
    }
    assert listed == folders, (
        f"missing: {sorted(folders - listed)}, stale: {sorted(listed - folders)}"
    )
