"""Docs match the code: the README's settings table is the generated one, and every
`repricer ...` command line the README shows parses."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from repricer.streams.cli import build_parser
from repricer.streams.settings import settings_reference
from repricer.streams.tools.train import build_parser as build_train_parser

README = (Path(__file__).parents[3] / "README.md").read_text()


def test_readme_settings_table_is_current() -> None:
    start = README.index("<!-- settings-reference:start -->") + len(
        "<!-- settings-reference:start -->"
    )
    end = README.index("<!-- settings-reference:end -->")
    assert README[start:end].strip() == settings_reference().strip(), (
        "run `python -m repricer.streams.settings`"
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


# what the README's placeholders stand for in the command lines it shows
PLACEHOLDERS = {
    "FILE": "history.csv",
    "SQL": "SELECT 1",
    "SKU": "A",
    "X": "60",
    "N": "5",
    "M": "5",
    "P": "9.99",
    "T": "1767225600000",
    "TIME": "2026-01-01T00:00:00Z",
    "ZONE": "UTC",
    "KIND.FIELD=COLUMN": "orders.ts=created_at",
    "FIELD=COLUMN": "ts=created_at",
    "ID": "orders/0@17",
    "REASON": "wrong_type",
}


def readme_commands(text: str = README) -> list[str]:
    """Every `repricer ...` line of the README's code blocks, and every inline code span that
    starts with `repricer ` (tables included; a span may wrap onto the next line)."""
    out: list[str] = []
    prose: list[str] = []
    in_block = False
    for line in text.splitlines():
        if line.lstrip().startswith("```"):
            in_block = not in_block
            continue
        if in_block:
            cmd = line.strip().removeprefix("$ ").split(" #", 1)[0].strip()
            if cmd.startswith("repricer "):
                out.append(cmd)
        else:
            prose.append(line)
    spans = re.findall(r"`(repricer [^`]+)`", "\n".join(prose))
    return out + [" ".join(s.split()) for s in spans]


def command_argv(cmd: str) -> list[str]:
    """A shown command line as argv: `\\|` alternatives -> the first, `[...]` optional parts
    kept (brackets dropped), `...` dropped, placeholders substituted."""
    cmd = re.sub(r"(\S+?)(?:\\\|\S+?)+(?=[\s\]]|$)", r"\1", cmd)  # a\|b\|c -> a
    cmd = re.sub(r"(\S+?)(?:\|\S+?)+(?=[\s\]]|$)", r"\1", cmd)  # a|b -> a
    cmd = cmd.replace("[", " ").replace("]", " ").replace("...", " ").replace("…", " ")
    argv = shlex.split(cmd)[1:]
    unknown = [a for a in argv if re.fullmatch(r"[A-Z][A-Z_]*", a) and a not in PLACEHOLDERS]
    if unknown:
        raise ValueError(f"{cmd!r}: add the placeholders {unknown} to PLACEHOLDERS")
    return [PLACEHOLDERS.get(a, a) for a in argv]


def test_readme_command_extraction() -> None:
    text = (
        "`repricer a FILE [--speed X]` and `repricer b\nx`\n| `repricer c on\\|off` |\n"
        "```bash\nrepricer d --json   # comment\n```\n"
    )
    cmds = readme_commands(text)
    assert sorted(cmds) == [
        "repricer a FILE [--speed X]",
        "repricer b x",
        "repricer c on\\|off",
        "repricer d --json",
    ]
    assert command_argv("repricer a FILE [--speed X]") == ["a", "history.csv", "--speed", "60"]
    assert command_argv("repricer c on\\|off SKU") == ["c", "on", "A"]
    assert command_argv("repricer t [--source s\\|c ...]") == ["t", "--source", "s"]
    with pytest.raises(ValueError, match="WHAT"):
        command_argv("repricer a WHAT")


COMMANDS = sorted(set(readme_commands()))


def test_readme_shows_commands() -> None:
    assert len(COMMANDS) >= 20, COMMANDS
    assert any(c.startswith("repricer replay") for c in COMMANDS)


@pytest.mark.parametrize("cmd", COMMANDS)
def test_every_readme_command_line_parses(cmd: str) -> None:
    argv = command_argv(cmd)
    try:
        args = build_parser().parse_args(argv)
        if args.command == "train":  # the trainer's own parser takes the rest
            build_train_parser().parse_args(args.train_args)
    except SystemExit as exc:
        pytest.fail(f"README shows {cmd!r}, which does not parse ({argv}): exit {exc.code}")


def test_readme_images_exist_and_the_screenshot_can_be_regenerated() -> None:
    root = Path(__file__).parents[3]
    images = re.findall(r"!\[[^\]]*\]\(([^)\s]+)\)", README)
    assert "infra/docs/dashboard.png" in images
    for image in images:
        data = (root / image).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n", image
        assert len(data) < 300_000, f"{image}: {len(data)} bytes"
    # the sentence under the image regenerates it with a flag `repricer demo --help` shows
    assert "`repricer demo --screenshot infra/docs/dashboard.png`" in README
    sub = next(a for a in build_parser()._actions if a.dest == "command")
    assert "--screenshot" in sub.choices["demo"].format_help()  # type: ignore[index]
