"""``repricer holdout draw``: the control group stratified by category and sales level."""

from __future__ import annotations

import argparse
from datetime import UTC, datetime, timedelta
from pathlib import Path

from repricer.streams.cli.common import Subparsers, err, load_settings

DEFAULT_DAYS = 28  # sales read when --since is not given


def _cmd_draw(args: argparse.Namespace) -> int:
    from repricer.streams.going_live import parse_time
    from repricer.streams.holdout_draw import check_fraction, table
    from repricer.streams.tools.holdout import NoCatalog, draw_to_file

    out = Path(args.out)
    try:
        check_fraction(args.fraction)
        since = (
            parse_time(args.since)
            if args.since
            else datetime.now(UTC) - timedelta(days=DEFAULT_DAYS)
        )
    except ValueError as e:
        err(f"repricer holdout draw: {e}")
        return 2
    if out.exists() and not args.force:
        err(f"repricer holdout draw: {out} exists (the live holdout?); --force replaces it")
        return 2
    if not out.parent.is_dir():
        err(f"repricer holdout draw: no directory {out.parent} for {out}")
        return 2
    settings = load_settings()
    try:
        drawn = draw_to_file(
            settings,
            fraction=args.fraction,
            salt=args.salt if args.salt is not None else settings.holdout_salt,
            since=since,
            out=out,
            progress=err,
        )
    except NoCatalog as e:
        err(f"repricer holdout draw: {e}")
        return 1
    print(table(drawn.draw))
    d = drawn.draw
    err(
        f"wrote {len(d.held)} of {d.skus} SKUs ({len(d.held) / d.skus:.1%}, asked "
        f"{d.fraction:.1%}) in {len(d.strata)} strata to {out}; hold them out with "
        f"REPRICER_HOLDOUT_FILE={out}"
    )
    return 0


def add_holdout(sub: Subparsers) -> None:
    h = sub.add_parser(
        "holdout",
        help="draw the holdout (control group) stratified by category and sales level",
    )
    hs = h.add_subparsers(dest="holdout_command", required=True, metavar="ACTION")
    d = hs.add_parser(
        "draw",
        help="draw a stratified holdout from the catalog and recent sales into a file",
        description="Split the catalogue (the catalog topic) into strata, category x sales "
        "level (no sales, or the tercile of the SKU's units sold since --since among its "
        "category's), and hold out round(F x n) SKUs of each stratum of n, in the order of "
        "blake2b(salt|SKU): deterministic for a salt. Writes one SKU a line under a # header "
        "and prints the strata; point REPRICER_HOLDOUT_FILE at the file.",
    )
    d.add_argument(
        "--fraction",
        type=float,
        required=True,
        metavar="F",
        help="share of each stratum held out, between 0 and 1 (e.g. 0.2)",
    )
    d.add_argument(
        "--salt",
        help="salt of the draw order; a new salt draws a new group (default: "
        "REPRICER_HOLDOUT_SALT)",
    )
    d.add_argument(
        "--since",
        metavar="TIME",
        help="sales counted from TIME: ISO 8601 (UTC if no offset) or epoch seconds "
        f"(default: {DEFAULT_DAYS} days ago)",
    )
    d.add_argument("--out", required=True, metavar="FILE", help="the holdout file to write")
    d.add_argument("--force", action="store_true", help="replace FILE if it exists")
    d.set_defaults(func=_cmd_draw)
