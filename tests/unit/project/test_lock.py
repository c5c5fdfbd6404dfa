"""constraints.txt locks every dependency, and every install in the Makefile uses it.

A dependency added to pyproject.toml without `make lock` fails here, instead of being resolved to
whatever is newest on the day a fresh machine installs it.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).parents[3]
PIN = re.compile(r"^(?P<name>[A-Za-z0-9][A-Za-z0-9._-]*)==(?P<version>[A-Za-z0-9.+!_-]+)$")


def _pins() -> dict[str, Version]:
    pins: dict[str, Version] = {}
    for n, raw in enumerate((ROOT / "constraints.txt").read_text().splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        match = PIN.match(line)
        assert match, f"constraints.txt:{n}: {line!r} is not an exact `name==version` pin"
        name = canonicalize_name(match["name"])
        assert name not in pins, f"constraints.txt:{n}: {name} is pinned twice"
        pins[name] = Version(match["version"])
    return pins


def _requirements() -> list[Requirement]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    return [Requirement(r) for r in project["dependencies"]] + [
        Requirement(r) for r in project["optional-dependencies"]["dev"]
    ]


def test_every_requirement_of_the_project_and_its_dev_extra_is_pinned() -> None:
    pins = _pins()
    requirements = _requirements()
    assert len(requirements) > 15, "pyproject.toml's requirements were not read"
    for req in requirements:
        if req.marker is not None and not req.marker.evaluate():
            continue
        name = canonicalize_name(req.name)
        assert name in pins, f"{req.name} is not in constraints.txt: run `make lock`"
        assert req.specifier.contains(pins[name], prereleases=True), (
            f"constraints.txt pins {req.name}=={pins[name]}, outside pyproject.toml's "
            f"{req.specifier}: run `make lock`"
        )


def test_torch_is_pinned_by_the_makefile_alone() -> None:
    makefile = (ROOT / "Makefile").read_text()
    assert re.search(r"^TORCH_VERSION \?= \d+\.\d+\.\d+$", makefile, re.M)
    assert "torch" not in _pins(), "torch's version is TORCH_VERSION in the Makefile"


def test_every_pip_install_in_the_makefile_is_constrained_by_the_lock() -> None:
    makefile = (ROOT / "Makefile").read_text()
    assert re.search(r"^LOCK\s*:?= constraints\.txt$", makefile, re.M)
    installed = re.search(r"^\$\(VENV\)/\.installed:(.*)$", makefile, re.M)
    assert installed and "$(LOCK)" in installed[1].split(), (
        "$(VENV)/.installed must be rebuilt when constraints.txt changes"
    )
    installs = [line for line in makefile.splitlines() if "$(PIP) install" in line]
    assert len(installs) >= 3, installs
    for line in installs:
        assert "-c $(LOCK)" in line, f"unconstrained install in the Makefile: {line.strip()}"


def test_the_worker_image_installs_at_the_locked_versions() -> None:
    dockerfile = (ROOT / "infra" / "Dockerfile").read_text()
    installs = [line for line in dockerfile.splitlines() if "pip install" in line]
    assert installs
    for line in installs:
        assert "-c constraints.txt" in line, f"unconstrained install in the Dockerfile: {line}"
    assert re.search(r"^COPY .*\bconstraints\.txt\b.* \./$", dockerfile, re.M)
