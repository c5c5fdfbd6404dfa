"""What the command modules share."""

from __future__ import annotations

import argparse
import sys
from typing import TypeAlias

Subparsers: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"


def err(msg: str) -> None:
    """A progress or error line on stderr."""
    print(msg, file=sys.stderr, flush=True)
