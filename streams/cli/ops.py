"""Operator commands: ``query``, ``report`` and ``control``."""

from __future__ import annotations

import argparse
import json
import sys
from typing import TYPE_CHECKING, Any

from repricer.streams.cli.common import Subparsers, load_settings

if TYPE_CHECKING:
    from repricer.streams.settings import Settings


def _cmd_query(args: argparse.Namespace) -> int:
    from repricer.infra.clickhouse import connect

    params = dict(p.split("=", 1) for p in args.param)
    ch = connect(load_settings().clickhouse_url.get_secret_value())
    try:
        for row in ch.query(args.sql, params or None):
            print("\t".join(str(v) for v in row))
    finally:
        ch.close()
    return 0


def _cmd_report(args: argparse.Namespace) -> int:
    from repricer.infra.clickhouse import connect
    from repricer.streams import queries

    if args.uplift and not args.since:
        print("--uplift needs --since TIME (when the policy went live)", file=sys.stderr)
        return 2
    settings = load_settings()
    if args.uplift:
        from repricer.streams.build import holdout

        holds = holdout(settings).holds  # a bad REPRICER_HOLDOUT_FILE stops here, first
    ch = connect(settings.clickhouse_url.get_secret_value())
    try:
        out: dict[str, Any] = {
            "clickhouse_rows": queries.row_counts(ch),
            "top_skus_by_revenue": queries.top_skus_by_revenue(ch),
            "dead_letters_by_reason": queries.dead_letters_by_reason(ch),
            "price_changes_by_reason": queries.price_changes_by_reason(ch),
            "forecast_accuracy": queries.forecast_accuracy(ch),
        }
        if args.shadow:
            from repricer.streams.going_live import shadow_summary

            out["shadow"] = shadow_summary(ch)
        if args.uplift:
            out["uplift"] = _uplift(ch, args, settings, holds)
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


def _rollback_commands(args: argparse.Namespace, settings: Settings) -> list[Any]:
    """One ``rollback`` per SKU of the target, with its price in force at ``--to``."""
    from repricer.infra.clickhouse import connect
    from repricer.schemas import ControlCommand
    from repricer.streams.going_live import parse_time, prices_at

    at = parse_time(args.to)
    ch = connect(settings.clickhouse_url.get_secret_value())
    try:
        prices: dict[str, float | None] = dict(prices_at(ch, at, args.sku))
    finally:
        ch.close()
    if not prices and args.sku != "*" and not args.sku.startswith("category:"):
        prices[args.sku] = None  # no change on record: its price never moved; frozen only
    why = args.why or f"rollback to {at.isoformat()}"
    return [
        ControlCommand(sku=sku, action="rollback", price=p, who=args.who, why=why)
        for sku, p in prices.items()
    ]


def _uplift(ch: Any, args: argparse.Namespace, settings: Settings, holds: Any) -> dict[str, Any]:
    from repricer.streams.going_live import parse_time
    from repricer.streams.uplift import report

    return report(
        ch,
        holds=holds,
        window_s=settings.window_s,
        since=parse_time(args.since),
        until=parse_time(args.until) if args.until else None,
        start=parse_time(args.start) if args.start else None,
    )


def _cmd_control(args: argparse.Namespace) -> int:
    from kafka import KafkaProducer

    from repricer.infra.kafka_client import kafka_python_config, producer_batch_bytes
    from repricer.schemas import ControlCommand, encode
    from repricer.streams.headers import produced

    settings = load_settings()
    if args.action == "rollback":
        if args.to is None:
            print("rollback needs --to TIME", file=sys.stderr)
            return 2
        cmds = _rollback_commands(args, settings)
    else:
        if args.to is not None:
            print("--to is for rollback only", file=sys.stderr)
            return 2
        cmds = [
            ControlCommand(
                sku=args.sku, action=args.action, price=args.price, who=args.who, why=args.why
            )
        ]
    producer = KafkaProducer(
        batch_size=producer_batch_bytes(settings), **kafka_python_config(settings)
    )
    for cmd in cmds:
        producer.send(
            settings.topic_control,
            key=cmd.sku.encode(),
            value=encode(cmd),
            headers=list(produced("ControlCommand")),
        )
    producer.flush()
    producer.close()
    if args.action == "rollback":
        for cmd in cmds:
            print(f"rollback {cmd.sku}: {cmd.price if cmd.price is not None else 'freeze only'}")
        print(f"sent {len(cmds)} rollback(s) for {args.sku!r} to {settings.topic_control}")
    else:
        print(f"sent {args.action} for {args.sku!r} to {settings.topic_control}")
    return 0


def add_query(sub: Subparsers) -> None:
    q = sub.add_parser("query", help="run a SQL query against the configured ClickHouse")
    q.add_argument("sql", help="SQL; use %%(name)s placeholders with --param name=value")
    q.add_argument("--param", action="append", default=[], metavar="NAME=VALUE")
    q.set_defaults(func=_cmd_query)


def add_control(sub: Subparsers) -> None:
    c = sub.add_parser(
        "control",
        help="freeze/unfreeze a SKU (or '*'), set/clear a price override, switch SKUs between "
        "shadow and live, or roll prices back to an earlier time",
        description="shadow/live take a SKU, 'category:NAME' or '*'; rollback --to TIME takes "
        "the same and republishes, per SKU, the price in force at TIME (from ClickHouse "
        "price_changes) inside floor and ceiling, then freezes it (unfreeze to resume).",
    )
    c.add_argument(
        "action",
        choices=["freeze", "unfreeze", "override", "clear_override", "shadow", "live", "rollback"],
    )
    c.add_argument(
        "sku",
        nargs="?",
        default="*",
        help="a SKU, '*' for every SKU (the default), or 'category:NAME' (shadow, live, rollback)",
    )
    c.add_argument("--price", type=float, help="override price (with `override`)")
    c.add_argument(
        "--to",
        metavar="TIME",
        help="with rollback: ISO 8601 time (UTC if no offset) or epoch seconds",
    )
    c.add_argument("--who", default="cli", help="who is asking (recorded)")
    c.add_argument("--why", default="", help="why (recorded)")
    c.set_defaults(func=_cmd_control)


def add_report(sub: Subparsers) -> None:
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
    r.add_argument(
        "--shadow",
        action="store_true",
        help="what the policy would have changed for SKUs in shadow or holdout, and the "
        "forecast gain it expected",
    )
    r.add_argument(
        "--uplift",
        action="store_true",
        help="the policy's effect on profit, revenue and units: treated SKUs against the "
        "holdout (REPRICER_HOLDOUT_*), difference in differences around --since, with a 95%% "
        "interval and the SKU-days behind it (or 'not enough data')",
    )
    r.add_argument("--since", metavar="TIME", help="with --uplift: when the policy went live")
    r.add_argument(
        "--start",
        metavar="TIME",
        help="with --uplift: start of the period before (default: as long as the one after)",
    )
    r.add_argument("--until", metavar="TIME", help="with --uplift: end of the period (now)")
    r.set_defaults(func=_cmd_report)
