"""``repricer --help`` parses its command line without the simulator or numpy: the choices of
``--market`` are written out in the CLI and kept equal to the simulator's ``MARKETS`` here."""

from __future__ import annotations

import subprocess
import sys

from repricer.streams.cli.tools import MARKETS as CLI_MARKETS
from repricer.streams.tools.simulator.families import MARKETS


def test_the_cli_market_choices_are_the_simulators_markets() -> None:
    assert CLI_MARKETS == MARKETS


def test_building_the_parser_imports_neither_the_simulator_nor_numpy() -> None:
    code = (
        "import sys\n"
        "from repricer.streams.cli import build_parser\n"
        "build_parser().format_help()\n"
        "print(sorted(m for m in sys.modules if m == 'numpy' or m.startswith("
        "'repricer.streams.tools.simulator')))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], check=True, capture_output=True, text=True, timeout=60
    )
    assert done.stdout.strip() == "[]", done.stdout
