"""``repricer dlq list|show|resend``: look at dead letters and send fixed ones again."""

from __future__ import annotations

import argparse
import json
import textwrap
from pathlib import Path
from typing import TYPE_CHECKING

from repricer.streams.cli.common import Subparsers, err, load_settings

if TYPE_CHECKING:
    from repricer.streams.settings import Settings

GROUPS = ("reason", "topic", "hour", "day")


def _filter(args: argparse.Namespace) -> object:
    from repricer.streams.tools import dlq

    try:
        return dlq.Filter(
            reasons=frozenset(args.reason),
            topics=frozenset(args.topic),
            ids=frozenset(getattr(args, "id", None) or ()),
            since_ms=dlq.parse_time(args.since) if args.since else None,
            until_ms=dlq.parse_time(args.until) if args.until else None,
        )
    except ValueError as exc:
        raise SystemExit(f"repricer dlq: --since/--until: {exc}") from None


def _read(args: argparse.Namespace, settings: Settings) -> list:  # type: ignore[type-arg]
    from repricer.streams.tools import dlq

    progress = None if args.quiet else err
    try:
        entries, unreadable = dlq.read_letters(settings, timeout_s=args.timeout, progress=progress)
    except TimeoutError as exc:
        raise SystemExit(f"repricer dlq: {exc}") from None
    if unreadable and not args.quiet:
        err(f"{unreadable} records on {settings.topic_dlq} are no dead letter; ignored")
    return entries


def _cmd_list(args: argparse.Namespace) -> int:
    from repricer.streams.tools import dlq

    settings = load_settings()
    entries = [e for e in _read(args, settings) if _filter(args)(e)]  # type: ignore[operator]
    group_by = [g.strip() for g in args.group_by.split(",") if g.strip()]
    bad = [g for g in group_by if g not in GROUPS]
    if bad or not group_by:
        raise SystemExit(f"repricer dlq list: --group-by takes {','.join(GROUPS)}; got {bad}")
    print(json.dumps(dlq.summary(entries, group_by, with_ids=args.ids)))
    return 0


def _cmd_show(args: argparse.Namespace) -> int:
    from repricer.streams.tools import dlq

    settings = load_settings()
    shown = dlq.show(_read(args, settings), args.letter_id, settings)
    if shown is None:
        err(f"repricer dlq show: no dead letter {args.letter_id} on {settings.topic_dlq}")
        return 1
    print(json.dumps(shown, indent=2, default=str))
    return 0


def _cmd_resend(args: argparse.Namespace) -> int:
    from repricer.streams.tools import dlq

    if not (args.reason or args.id):
        raise SystemExit("repricer dlq resend: say which letters: --reason REASON or --id ID")
    payload = None
    if args.payload:
        if len(args.id) != 1:
            raise SystemExit("repricer dlq resend: --payload FILE replaces one letter: one --id")
        path = Path(args.payload)
        if not path.is_file():
            raise SystemExit(f"repricer dlq resend: --payload: {path}: no such file")
        payload = path.read_bytes().rstrip(b"\r\n")
    settings = load_settings()
    entries = _read(args, settings)
    try:
        out = dlq.resend(
            settings,
            entries,
            _filter(args),  # type: ignore[arg-type]
            payload=payload,
            force=args.force,
            dry_run=args.dry_run,
            timeout_s=args.timeout,
            progress=None if args.quiet else err,
        )
    except (ValueError, TimeoutError) as exc:
        raise SystemExit(f"repricer dlq resend: {exc}") from None
    if not args.quiet:
        err(
            f"resent {out['resent']} of {out['selected']} letters; "
            f"{len(out['already_resent'])} already resent, "
            f"{sum(map(len, out['skipped'].values()))} not resendable"
        )
    print(json.dumps(out))
    return 0


def _selection(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--reason", action="append", default=[], help="only this reason code (repeatable)"
    )
    p.add_argument(
        "--topic",
        action="append",
        default=[],
        help="only letters from this source topic (repeatable)",
    )
    p.add_argument(
        "--since",
        help="only letters dead-lettered at or after TIME (ISO 8601, UTC if no offset, "
        "or epoch ms)",
    )
    p.add_argument("--until", metavar="TIME", help="only letters dead-lettered before TIME")


def _reading(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--timeout",
        type=float,
        default=60.0,
        help="give up reading a topic to its end after this many seconds (default 60)",
    )
    p.add_argument("--quiet", action="store_true", help="no progress on stderr")


def add_dlq(sub: Subparsers) -> None:
    d = sub.add_parser(
        "dlq",
        help="dead letters: list them by reason/topic/time, show one, resend fixed ones",
        description="Dead letters are read from the dead-letter topic (REPRICER_TOPIC_DLQ). A "
        "letter's ID is where the refused record was read: TOPIC/PARTITION@OFFSET.",
    )
    dsub = d.add_subparsers(dest="dlq_command", required=True, metavar="ACTION")

    ls = dsub.add_parser(
        "list", help="dead letters grouped (default by reason and source topic), as JSON"
    )
    _selection(ls)
    ls.add_argument(
        "--group-by",
        default="reason,topic",
        metavar="KEYS",
        help=f"comma-separated, of {', '.join(GROUPS)} (default reason,topic)",
    )
    ls.add_argument("--ids", type=int, default=0, metavar="N", help="list up to N ids per group")
    _reading(ls)
    ls.set_defaults(func=_cmd_list)

    sh = dsub.add_parser(
        "show", help="one dead letter: headers, key, payload, and the payload decoded"
    )
    sh.add_argument("letter_id", metavar="ID", help="TOPIC/PARTITION@OFFSET, e.g. orders/0@17")
    _reading(sh)
    sh.set_defaults(func=_cmd_show)

    rs = dsub.add_parser(
        "resend",
        help="send dead letters again to their source topic and partition, idempotently",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description=textwrap.dedent(
            """\
            Send the selected dead letters' original records (key and value) again to the
            topic and partition they were read from, with the header
            repricer-resend-of: ID. Select all letters of a reason (after the code, the
            catalog or a setting was fixed) with --reason, or single letters with --id; with
            --id and --payload FILE, the file's bytes replace the payload (it must decode,
            unless --force).

            Idempotent: a letter already resent (a record carrying its id is on the source
            topic and was not refused again) is skipped unless --force. Letters the engine
            refused (late_event, duplicate_order: their payload is an internal envelope),
            truncated ones and those of output topics are not resendable as they are.
            Progress goes to stderr, a JSON summary to stdout."""
        ),
    )
    _selection(rs)
    rs.add_argument(
        "--id", action="append", default=[], metavar="ID", help="this letter (repeatable)"
    )
    rs.add_argument("--payload", metavar="FILE", help="send this file's bytes instead (one --id)")
    rs.add_argument("--force", action="store_true", help="resend even letters already resent")
    rs.add_argument("--dry-run", action="store_true", help="say what would be resent; send nothing")
    _reading(rs)
    rs.set_defaults(func=_cmd_resend)
