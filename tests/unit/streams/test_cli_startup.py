"""``repricer --help`` parses its command line without the simulator, numpy or pydantic: the
choices of ``--market`` are written out in the CLI and kept equal to the simulator's ``MARKETS``
here, and the settings are loaded when a command runs."""

from __future__ import annotations

import subprocess
import sys

import pytest

from repricer.streams.cli.tools import MARKETS as CLI_MARKETS
from repricer.streams.tools.simulator.families import MARKETS


def test_the_cli_market_choices_are_the_simulators_markets() -> None:
    assert CLI_MARKETS == MARKETS


def test_building_the_parser_imports_neither_the_simulator_nor_numpy_nor_pydantic() -> None:
    code = (
        "import sys\n"
        "from repricer.streams.cli import build_parser\n"
        "build_parser().format_help()\n"
        "print(sorted(m for m in sys.modules if m in ('numpy', 'pydantic') or m.startswith("
        "'repricer.streams.tools.simulator')))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], check=True, capture_output=True, text=True, timeout=60
    )
    assert done.stdout.strip() == "[]", done.stdout


def test_a_read_that_cannot_reach_its_end_is_one_clear_line_and_exit_1(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A topic read that times out (``streams.topic_read``) ends the command with its reason on
    stderr and exit 1, not a traceback."""
    import argparse

    import repricer.streams.cli as cli

    def add_stuck(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
        def run(args: argparse.Namespace) -> int:
            raise TimeoutError("could not read some-topic to its end in 60s")

        sub.add_parser("stuck").set_defaults(func=run)

    monkeypatch.setattr(cli, "COMMANDS", [*cli.COMMANDS, add_stuck])
    assert cli.main(["stuck"]) == 1
    assert capsys.readouterr().err.strip() == (
        "repricer stuck: could not read some-topic to its end in 60s"
    )
