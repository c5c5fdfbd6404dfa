"""Docs match the code: the README's settings table is the generated one."""

from __future__ import annotations

from pathlib import Path

from streams.cli import build_parser
from streams.settings import settings_reference

README = (Path(__file__).parents[2] / "README.md").read_text()


def test_readme_settings_table_is_current() -> None:
    start = README.index("<!-- settings-reference:start -->") + len(
        "<!-- settings-reference:start -->"
    )
    end = README.index("<!-- settings-reference:end -->")
    assert README[start:end].strip() == settings_reference().strip(), (
        "run `python -m streams.settings`"
    )


def test_readme_starts_with_the_two_commands() -> None:
    head = README[:600]
    assert "make demo" in head and "make test" in head


def test_every_cli_command_is_documented_and_has_help() -> None:
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    for name, sp in sub.choices.items():  # type: ignore[union-attr]
        assert f"repricer {name}" in README, name
        assert sp.format_help()
