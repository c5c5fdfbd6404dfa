"""``repricer demo --screenshot`` without Chromium: a clear error before anything starts."""

from __future__ import annotations

from pathlib import Path

import pytest

from repricer.streams.cli import main


def test_demo_screenshot_without_chromium_fails_before_starting(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path / "empty-bin"))
    monkeypatch.delenv("REPRICER_CHROMIUM", raising=False)
    workdir = tmp_path / "demo"
    shot = tmp_path / "dashboard.png"
    rc = main(["demo", "--workdir", str(workdir), "--screenshot", str(shot)])
    assert rc == 2
    assert "--screenshot needs Chromium" in capsys.readouterr().err
    assert not workdir.exists() and not shot.exists()


def test_repricer_chromium_names_the_binary(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from repricer.streams.tools.screenshot import find_chromium

    binary = tmp_path / "my-chromium"
    binary.write_text("#!/bin/sh\n")
    binary.chmod(0o755)
    monkeypatch.setenv("PATH", str(tmp_path / "empty-bin"))
    monkeypatch.setenv("REPRICER_CHROMIUM", str(binary))
    assert find_chromium() == str(binary)
