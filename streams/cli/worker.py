"""Commands that run the product: ``worker`` and ``init``."""

from __future__ import annotations

import argparse
import asyncio
import logging

from repricer.infra import logs
from repricer.streams.cli.common import Subparsers, load_settings


def _cmd_worker(args: argparse.Namespace) -> int:
    from repricer.streams.app import create_app
    from repricer.streams.shutdown import GracefulWorker

    settings = load_settings()
    logging.getLogger(__name__).info("settings: %r", settings)
    if settings.event_loop == "uvloop":
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    rp = create_app(settings)
    worker = GracefulWorker(
        rp.app,
        loglevel=args.loglevel,
        quiet=True,
        shutdown_timeout_s=settings.shutdown_timeout_s,
        # the same format as the CLI's own lines (JSON with REPRICER_LOG_FORMAT=json)
        logging_config=logs.logging_config(settings.log_format, logs.level(args.loglevel)),
    )
    worker.execute_from_commandline()
    return 0


def _cmd_init(args: argparse.Namespace) -> int:
    from repricer.infra.clickhouse import connect
    from repricer.infra.kafka_admin import ensure_topics

    settings = load_settings()
    if not args.skip_kafka:
        created = ensure_topics(settings)
        print(f"topics created: {created or 'none (all existed)'}")
    ch = connect(settings.clickhouse_url.get_secret_value())
    ch.init()
    ch.close()
    print(f"ClickHouse schema applied to database {ch.database!r}")
    return 0


def add_worker(sub: Subparsers) -> None:
    w = sub.add_parser(
        "worker",
        help="run a repricing worker (Faust) until stopped",
        description="Run a repricing worker until stopped. SIGTERM or Ctrl-C stops it cleanly: "
        "what it finished is committed and it exits within REPRICER_SHUTDOWN_TIMEOUT_S "
        "(default 8 s; exit code 0, or 75 if the deadline forced the exit).",
    )
    w.add_argument("--loglevel", default="info", choices=["crit", "error", "warn", "info", "debug"])
    w.set_defaults(func=_cmd_worker)


def add_init(sub: Subparsers) -> None:
    i = sub.add_parser(
        "init", help="create Kafka topics and apply the ClickHouse schema (idempotent)"
    )
    i.add_argument("--skip-kafka", action="store_true", help="only apply the ClickHouse schema")
    i.set_defaults(func=_cmd_init)
