"""The ``repricer`` command line: every subcommand has ``--help``."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
import textwrap
from pathlib import Path
from typing import Any

from repricer.infra import logs
from repricer.streams.settings import Settings

TS_UNITS = ("ms", "s", "us")


def _cmd_worker(args: argparse.Namespace) -> int:
    from repricer.streams.app import create_app
    from repricer.streams.shutdown import GracefulWorker

    settings = Settings()
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

    settings = Settings()
    if not args.skip_kafka:
        created = ensure_topics(settings)
        print(f"topics created: {created or 'none (all existed)'}")
    ch = connect(settings.clickhouse_url.get_secret_value())
    ch.init()
    ch.close()
    print(f"ClickHouse schema applied to database {ch.database!r}")
    return 0


def _cmd_simulate(args: argparse.Namespace) -> int:
    from repricer.streams.tools.simulate import run_simulation

    settings = Settings()

    def progress(rep: Any) -> None:
        if rep.minutes % 10 == 0:
            print(
                f"minute {rep.minutes}: {rep.events} events sent, "
                f"{rep.price_changes_applied} price changes applied",
                file=sys.stderr,
            )

    rep = asyncio.run(
        run_simulation(
            settings,
            skus=args.skus,
            minutes=args.minutes,
            speed=args.speed,
            seed=args.seed,
            poison_every=args.poison_every,
            on_minute=progress,
        )
    )
    print(
        json.dumps(
            {
                "minutes": rep.minutes,
                "orders": rep.orders,
                "clicks": rep.clicks,
                "poison": rep.poison,
                "price_changes_applied": rep.price_changes_applied,
            }
        )
    )
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    from repricer.streams.tools.demo import print_report, run_demo

    report = run_demo(
        workdir=Path(args.workdir),
        skus=args.skus,
        minutes=args.minutes,
        speed=args.speed,
        seed=args.seed,
        poison_every=args.poison_every,
        quiet=args.json,
    )
    if args.json:
        print(json.dumps(report, default=str))
    else:
        print_report(report)
    return 0


def _cmd_tail(args: argparse.Namespace) -> int:
    from repricer.streams.tools.tail import tail

    return asyncio.run(
        tail(
            Settings(),
            group=args.group,
            from_beginning=args.from_beginning,
            max_events=args.max,
            idle_timeout=args.timeout,
        )
    )


def _cmd_query(args: argparse.Namespace) -> int:
    from repricer.infra.clickhouse import connect

    params = dict(p.split("=", 1) for p in args.param)
    ch = connect(Settings().clickhouse_url.get_secret_value())
    try:
        for row in ch.query(args.sql, params or None):
            print("\t".join(str(v) for v in row))
    finally:
        ch.close()
    return 0


def _cmd_report(args: argparse.Namespace) -> int:
    from repricer.infra.clickhouse import connect
    from repricer.streams import queries

    settings = Settings()
    ch = connect(settings.clickhouse_url.get_secret_value())
    try:
        out: dict[str, Any] = {
            "clickhouse_rows": queries.row_counts(ch),
            "top_skus_by_revenue": queries.top_skus_by_revenue(ch),
            "dead_letters_by_reason": queries.dead_letters_by_reason(ch),
            "price_changes_by_reason": queries.price_changes_by_reason(ch),
            "forecast_accuracy": queries.forecast_accuracy(ch),
        }
    finally:
        ch.close()
    if not args.no_accounting:
        from repricer.streams.accounting import read_accounting

        out["accounting"] = acct = read_accounting(settings)
        if acct["ok"] is False:
            print(
                f"ERROR: {acct['unaccounted'][0]} accepted events ({acct['unaccounted'][1]} "
                "units) are in no emitted window, open window or dead letter",
                file=sys.stderr,
            )
    if args.audit:
        from repricer.streams.accounting import audit

        out["audit"] = aud = audit(settings)
        if not aud["ok"]:
            print(
                f"ERROR: ingest committed {aud['source_events']} valid events, the engine "
                f"accepted {aud['accepted_events']} ({aud['missing_events']} missing; run it "
                "when the input has stopped and the worker has caught up)",
                file=sys.stderr,
            )
    print(json.dumps(out, default=str, indent=None if args.json else 2))
    failed = out.get("accounting", {}).get("ok") is False or out.get("audit", {}).get("ok") is False
    return 1 if failed else 0


def _cmd_backtest(args: argparse.Namespace) -> int:
    from repricer.streams.tools.backtest import backtest

    def progress(msg: str) -> None:
        if not args.json:
            print(msg, file=sys.stderr, flush=True)

    settings = Settings()
    if args.restock_days is not None:
        settings = Settings(restock_s=round(args.restock_days * 86_400))
    if args.no_lstm:
        settings = settings.model_copy(update={"lstm": False})
    report = backtest(
        skus=args.skus,
        days=args.days,
        seed=args.seed,
        settings=settings,
        markup=args.markup,
        stocked=args.stocked,
        progress=progress,
    )
    print(json.dumps(report, indent=None if args.json else 2))
    return 0 if report["guardrail_violations"] == 0 else 1


def _cmd_bench(args: argparse.Namespace) -> int:
    from repricer.streams.tools.bench.run import run_bench

    report = run_bench(args.what, quick=args.quick, progress=None if args.json else _err)
    print(json.dumps(report, indent=None if args.json else 2))
    return 0


def _err(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def _cmd_train(args: argparse.Namespace) -> int:
    from repricer.streams.tools.train import (
        main as train_main,  # training needs torch: `pip install torch`
    )

    return int(train_main(args.train_args) or 0)


def _cmd_replay(args: argparse.Namespace) -> int:
    from zoneinfo import ZoneInfo

    from repricer.streams.tools.replay import read, send

    settings = Settings()
    if args.end_of_input_only:
        if args.at is None:
            raise SystemExit("repricer replay: --end-of-input-only needs --at TIME")
        try:
            at = read.parse_time(args.at)
        except ValueError as exc:
            raise SystemExit(f"repricer replay: --at: {exc}") from None
        try:
            print(json.dumps(send.end_of_input_only(settings, at)))
        except RuntimeError as exc:  # refused by the broker, or no such topic
            raise SystemExit(f"repricer replay: {exc}") from None
        return 0
    sources = [("orders", Path(f)) for f in ([args.file] if args.file else []) + args.orders]
    sources += [("clicks", Path(f)) for f in args.clicks]
    sources = [("catalog", Path(f)) for f in args.catalog] + sources
    if not sources:
        raise SystemExit("repricer replay: give FILE, --orders, --clicks or --catalog")
    try:
        opts = read.ReadOptions(
            mapping=read.parse_mapping(args.map),
            ts_unit=args.ts_unit,
            tz=ZoneInfo(args.tz) if args.tz else None,
            fmt=args.format,
            delimiter=args.delimiter,
        )
        for _, path in sources:
            read.file_format(path, opts.fmt)
            if not path.is_file():
                raise ValueError(f"{path}: no such file")
    except (ValueError, KeyError) as exc:  # ZoneInfo raises a KeyError subclass
        raise SystemExit(f"repricer replay: {exc}") from None
    try:
        summary = send.replay_files(
            sources,
            opts=opts,
            speed=args.speed,
            settings=settings,
            end_of_input=args.end_of_input,
            progress=None if args.quiet else _err,
        )
    except RuntimeError as exc:  # records refused by the broker, or no such topic
        raise SystemExit(f"repricer replay: {exc}") from None
    print(json.dumps(summary))
    return 0


def _cmd_control(args: argparse.Namespace) -> int:
    from kafka import KafkaProducer

    from repricer.infra.kafka_client import kafka_python_config, producer_batch_bytes
    from repricer.schemas import ControlCommand, encode

    settings = Settings()
    cmd = ControlCommand(
        sku=args.sku, action=args.action, price=args.price, who=args.who, why=args.why
    )
    producer = KafkaProducer(
        batch_size=producer_batch_bytes(settings), **kafka_python_config(settings)
    )
    producer.send(settings.topic_control, key=args.sku.encode(), value=encode(cmd))
    producer.flush()
    producer.close()
    print(f"sent {args.action} for {args.sku!r} to {settings.topic_control}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="repricer",
        description="Streaming live repricing: Kafka in, guarded price changes out, "
        "aggregates to ClickHouse. Configuration comes from REPRICER_* env vars "
        "(see README).",
    )
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    w = sub.add_parser(
        "worker",
        help="run a repricing worker (Faust) until stopped",
        description="Run a repricing worker until stopped. SIGTERM or Ctrl-C stops it cleanly: "
        "what it finished is committed and it exits within REPRICER_SHUTDOWN_TIMEOUT_S "
        "(default 8 s; exit code 0, or 75 if the deadline forced the exit).",
    )
    w.add_argument("--loglevel", default="info", choices=["crit", "error", "warn", "info", "debug"])
    w.set_defaults(func=_cmd_worker)

    i = sub.add_parser(
        "init", help="create Kafka topics and apply the ClickHouse schema (idempotent)"
    )
    i.add_argument("--skip-kafka", action="store_true", help="only apply the ClickHouse schema")
    i.set_defaults(func=_cmd_init)

    def sim_args(sp: argparse.ArgumentParser, *, minutes: int, speed: float, poison: int) -> None:
        sp.add_argument(
            "--skus", type=int, default=30, help="number of simulated SKUs (default 30)"
        )
        sp.add_argument(
            "--minutes",
            type=int,
            default=minutes,
            help=f"simulated minutes to run (default {minutes})",
        )
        sp.add_argument(
            "--speed",
            type=float,
            default=speed,
            help=f"simulated seconds per wall second (default {speed:g})",
        )
        sp.add_argument("--seed", type=int, default=7, help="random seed of the market (default 7)")
        sp.add_argument(
            "--poison-every",
            type=int,
            default=poison,
            help=f"send one malformed order every N events, 0 = never (default {poison})",
        )

    s = sub.add_parser("simulate", help="run the closed-loop market simulator against Kafka")
    sim_args(s, minutes=60, speed=240.0, poison=0)
    s.set_defaults(func=_cmd_simulate)

    d = sub.add_parser(
        "demo", help="everything local: Tansu broker + chdb + simulator + worker, then a report"
    )
    sim_args(d, minutes=90, speed=240.0, poison=5000)
    d.add_argument("--workdir", default=".repricer/demo", help="scratch directory (wiped first)")
    d.add_argument("--json", action="store_true", help="print the final report as one JSON object")
    d.set_defaults(func=_cmd_demo)

    t = sub.add_parser("tail", help="example downstream consumer: print price changes as they come")
    t.add_argument("--group", default="repricer-tail", help="consumer group id")
    t.add_argument("--from-beginning", action="store_true", help="start at the earliest offset")
    t.add_argument("--max", type=int, default=0, help="stop after N events (0 = never)")
    t.add_argument(
        "--timeout", type=float, default=0, help="stop after this many idle seconds (0 = never)"
    )
    t.set_defaults(func=_cmd_tail)

    q = sub.add_parser("query", help="run a SQL query against the configured ClickHouse")
    q.add_argument("sql", help="SQL; use %%(name)s placeholders with --param name=value")
    q.add_argument("--param", action="append", default=[], metavar="NAME=VALUE")
    q.set_defaults(func=_cmd_query)

    b = sub.add_parser("backtest", help="static vs policy vs oracle prices on the simulated market")
    b.add_argument("--skus", type=int, default=200, help="simulated SKUs (default 200)")
    b.add_argument("--days", type=float, default=7, help="simulated days (default 7)")
    b.add_argument("--seed", type=int, default=7, help="market seed (default 7)")
    b.add_argument(
        "--markup",
        type=float,
        default=2.0,
        help="initial prices: cost x markup, a keystone rule by default (2.0)",
    )
    b.add_argument(
        "--stocked",
        type=float,
        default=0.0,
        help="share of SKUs with finite stock and no replenishment (default 0: none)",
    )
    b.add_argument(
        "--restock-days",
        type=float,
        default=None,
        help="inventory awareness: stock must cover this many days of demand "
        "(default REPRICER_RESTOCK_S; 0 ignores stock)",
    )
    b.add_argument("--no-lstm", action="store_true", help="River only (faster)")
    b.add_argument("--json", action="store_true", help="one-line JSON report")
    b.set_defaults(func=_cmd_backtest)

    be = sub.add_parser("bench", help="benchmarks (ratios measured side by side in one run)")
    be.add_argument(
        "what",
        choices=[
            "forecast",
            "ingest",
            "scaleout",
            "decisions",
            "sink",
            "memory",
            "recovery",
            "all",
        ],
        help="forecast: model WAPE vs naive baselines, LSTM batching; ingest: worker vs Faust "
        "count-only (same event loop) and Quix Streams count-only events/s; scaleout: two "
        "workers in one consumer group vs one, events/s; decisions: SKUs decided/s at window close; sink: the sink's decode + insert path vs "
        "one bulk clickhouse-driver insert, rows/s; memory: state bytes per SKU; recovery: "
        "seconds to process again after kill -9; all: everything in one report",
    )
    be.add_argument(
        "--quick",
        action="store_true",
        help="a reduced smoke run: `all` takes about 1.5 min on 2 cores (the figures: full runs)",
    )
    be.add_argument("--json", action="store_true", help="one-line JSON report")
    be.set_defaults(func=_cmd_bench)

    tr = sub.add_parser(
        "train",
        help="train the LSTM (simulator or ClickHouse history) and export ONNX",
        add_help=False,
        # every argument, --help included, is the trainer's: none is an option of this parser
        # (with "-" as a prefix, a leading --source is refused before REMAINDER can take it)
        prefix_chars="\0",
    )
    tr.add_argument(
        "train_args",
        nargs=argparse.REMAINDER,
        help="arguments of `python -m streams.tools.train` (see `repricer train --help`)",
    )
    tr.set_defaults(func=_cmd_train)

    rep = sub.add_parser(
        "replay",
        help="import history (catalog, orders, clicks from CSV/JSON lines) in event-time order",
        description=textwrap.fill(
            "Import history into the input topics: catalog items first (keyed by SKU), "
            "then orders and clicks merged in event-time order, then an end-of-input marker on "
            "every partition of the orders and clicks topics so the last windows close. Every row "
            "is validated like the worker does; rows that do not validate are not sent, and are "
            "counted per reason (first 20 listed) in the JSON summary printed at the end. "
            "Replaying the same files twice counts nothing twice.",
            78,
        ),
        epilog="examples:\n"
        "  repricer replay orders.csv\n"
        "  repricer replay --catalog catalog.csv --orders orders.csv --clicks clicks.jsonl\n"
        "  repricer replay --orders export.csv --map ts=created_at --map sku=product_id "
        "--ts-unit s\n"
        "  repricer replay --end-of-input-only --at 2026-01-31T23:59:59Z\n"
        "fields (the column of each field's own name, unless --map names another):\n"
        "  orders:  order_id ts sku qty unit_price [currency customer_id]\n"
        "  clicks:  event_id ts session_id sku type [price_seen]"
        "   (type: view|add_to_cart|remove_from_cart)\n"
        "  catalog: sku cost base_price min_price max_price [currency stock category]",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    rep.add_argument(
        "file", nargs="?", metavar="FILE", help="an orders file (same as --orders FILE)"
    )
    for kind in ("orders", "clicks", "catalog"):
        rep.add_argument(
            f"--{kind}",
            action="append",
            default=[],
            metavar="FILE",
            help=f"{kind} file: .csv, .jsonl or .ndjson, optionally .gz (repeatable)",
        )
    rep.add_argument(
        "--format",
        choices=["csv", "jsonl"],
        help="format of every file (default: by extension)",
    )
    rep.add_argument(
        "--map",
        action="append",
        default=[],
        metavar="[KIND.]FIELD=COLUMN",
        help="read FIELD from COLUMN (JSON key); without KIND. for every kind with FIELD, e.g. "
        "--map ts=created_at --map orders.sku=product_id (repeatable; unmapped fields are read "
        "from the column of their own name, other columns are dropped)",
    )
    rep.add_argument(
        "--ts-unit",
        choices=list(TS_UNITS),
        default="ms",
        help="unit of numeric timestamps: epoch ms (default), s or us; ISO 8601 strings are "
        "read as they are",
    )
    rep.add_argument(
        "--tz",
        metavar="ZONE",
        help="time zone of ISO 8601 timestamps without an offset, e.g. UTC or Europe/Berlin "
        "(default: such rows are skipped as naive_timestamp)",
    )
    rep.add_argument("--delimiter", default=",", help="CSV delimiter (default ',')")
    rep.add_argument(
        "--speed",
        type=float,
        default=0.0,
        metavar="X",
        help="pace events X times faster than they happened (60: an hour per minute); "
        "0, the default, sends as fast as the broker takes them (history imports)",
    )
    rep.add_argument(
        "--no-end-of-input",
        dest="end_of_input",
        action="store_false",
        help="send no end-of-input markers: leave the last windows open (live traffic goes on "
        "after the history and closes them)",
    )
    rep.add_argument(
        "--end-of-input-only",
        action="store_true",
        help="send only the end-of-input markers (history imported with another producer); "
        "needs --at",
    )
    rep.add_argument(
        "--at",
        metavar="TIME",
        help="with --end-of-input-only: the last event time imported (epoch ms or ISO 8601 with "
        "offset); the markers close every window up to it",
    )
    rep.add_argument("--quiet", action="store_true", help="no progress or skipped rows on stderr")
    rep.set_defaults(func=_cmd_replay)

    c = sub.add_parser(
        "control", help="freeze/unfreeze a SKU (or '*'), or set/clear a price override"
    )
    c.add_argument("action", choices=["freeze", "unfreeze", "override", "clear_override"])
    c.add_argument("sku", help="a SKU, or '*' for every SKU (freeze/unfreeze only)")
    c.add_argument("--price", type=float, help="override price (with `override`)")
    c.add_argument("--who", default="cli", help="who is asking (recorded)")
    c.add_argument("--why", default="", help="why (recorded)")
    c.set_defaults(func=_cmd_control)

    r = sub.add_parser(
        "report",
        help="summary queries over ClickHouse (row counts, top SKUs, DLQ) and the engine's "
        "conservation counts per partition (exit 1 if any accepted event is unaccounted)",
    )
    r.add_argument("--json", action="store_true", help="one-line JSON")
    r.add_argument(
        "--no-accounting",
        action="store_true",
        help="skip reading the conservation counts from Kafka (ClickHouse only)",
    )
    r.add_argument(
        "--audit",
        action="store_true",
        help="also count the valid orders and clicks in the input topics up to the ingest "
        "group's committed offsets and compare with the events the engine accepted (run it "
        "when the input has stopped; reads the input topics from the start)",
    )
    r.set_defaults(func=_cmd_report)
    return p


def main(argv: list[str] | None = None) -> int:
    logs.setup(logs.log_format())
    args = build_parser().parse_args(argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
