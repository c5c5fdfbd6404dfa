"""The ``repricer`` command line: every subcommand has ``--help``.

One module per group of commands; each command is an ``add_<name>(sub)`` function that adds its
parser and handler. To add a command, write its function and list it in ``COMMANDS``.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable

from repricer.infra import logs
from repricer.streams.cli import dlq, holdout, ops, replay, tools, worker
from repricer.streams.cli.common import Subparsers

# in the order ``repricer --help`` lists them
COMMANDS: tuple[Callable[[Subparsers], None], ...] = (
    worker.add_worker,
    worker.add_init,
    tools.add_simulate,
    tools.add_demo,
    tools.add_tail,
    ops.add_query,
    tools.add_backtest,
    tools.add_bench,
    tools.add_train,
    replay.add_replay,
    ops.add_control,
    ops.add_report,
    holdout.add_holdout,
    dlq.add_dlq,
)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="repricer",
        description="Streaming live repricing: Kafka in, guarded price changes out, "
        "aggregates to ClickHouse. Configuration comes from REPRICER_* env vars "
        "(see README).",
    )
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add in COMMANDS:
        add(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    logs.setup(logs.log_format())
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except TimeoutError as e:  # a topic read that could not reach its end: say so, no traceback
        print(f"repricer {args.command}: {e}", file=sys.stderr)
        return 1
    except ValueError as e:  # REPRICER_HOLDOUT_FILE, read at start-up: a clear line, exit 2
        from repricer.streams.holdout_draw import HoldoutFileError  # imported by then

        if not isinstance(e, HoldoutFileError):
            raise
        print(f"repricer {args.command}: {e}", file=sys.stderr)
        return 2
