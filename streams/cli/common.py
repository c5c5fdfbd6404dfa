"""What the command modules share."""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING, Any, TypeAlias

if TYPE_CHECKING:
    from repricer.streams.settings import Settings

Subparsers: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"


def err(msg: str) -> None:
    """A progress or error line on stderr."""
    print(msg, file=sys.stderr, flush=True)


def load_settings(**overrides: Any) -> Settings:
    """The settings from the environment (``REPRICER_*``), imported when a command runs: pydantic
    costs about 0.2 s to import, which ``repricer --help`` and a usage error need not pay."""
    from repricer.streams.settings import Settings

    return Settings(**overrides)
