"""``repricer replay``: import history into the input topics."""

from __future__ import annotations

import argparse
import json
import textwrap
from pathlib import Path

from repricer.streams.cli.common import Subparsers, err, load_settings

TS_UNITS = ("ms", "s", "us")


def _cmd_replay(args: argparse.Namespace) -> int:
    from zoneinfo import ZoneInfo

    from repricer.streams.tools.replay import read, send

    settings = load_settings()
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
            progress=None if args.quiet else err,
        )
    except RuntimeError as exc:  # records refused by the broker, or no such topic
        raise SystemExit(f"repricer replay: {exc}") from None
    print(json.dumps(summary))
    return 0


def add_replay(sub: Subparsers) -> None:
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
