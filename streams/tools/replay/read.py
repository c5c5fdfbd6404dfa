"""Read history files (CSV or JSON lines, optionally gzipped) into validated, time-sorted rows:
column mapping, timestamp conversion and the worker's own decoder; what does not validate is
counted per reason (see the package docstring)."""

from __future__ import annotations

import csv
import gzip
import io
import json
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, tzinfo
from pathlib import Path
from typing import Any, TextIO

import msgspec

from repricer.schemas import CatalogItem, Click, Order, Rejection, decode, ts_ms
from repricer.streams.settings import Settings

MAX_LISTED = 20  # problem lines printed and kept in the summary
TS_UNITS = {"ms": 1.0, "s": 1000.0, "us": 0.001}
FORMATS = ("csv", "jsonl")


@dataclass(frozen=True)
class Kind:
    """One importable kind of record: its schema, topic, message key and numeric fields."""

    name: str
    schema: type[Order] | type[Click] | type[CatalogItem]
    topic_attr: str
    key_field: str
    ints: tuple[str, ...] = ()
    floats: tuple[str, ...] = ()

    @property
    def fields(self) -> tuple[str, ...]:
        return tuple(self.schema.__struct_fields__)

    def topic(self, settings: Settings) -> str:
        return str(getattr(settings, self.topic_attr))


KINDS: dict[str, Kind] = {
    "catalog": Kind(
        "catalog",
        CatalogItem,
        "topic_catalog",
        "sku",
        ints=("stock",),
        floats=("cost", "base_price", "min_price", "max_price"),
    ),
    "orders": Kind("orders", Order, "topic_orders", "order_id", ("qty",), ("unit_price",)),
    "clicks": Kind("clicks", Click, "topic_clicks", "event_id", (), ("price_seen",)),
}
EVENT_KINDS = ("orders", "clicks")


@dataclass(frozen=True)
class Problem:
    """A row that was not sent: where it is, the reason code (as in the dead-letter table)."""

    kind: str
    path: str
    line: int
    reason: str
    detail: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.kind}: {self.reason}: {self.detail}"


@dataclass(frozen=True)
class Row:
    """A validated record, ready to send: event time (0 for catalog), kind, key, payload."""

    ts: int
    kind: str
    key: bytes
    payload: bytes


@dataclass
class ReadOptions:
    """How rows of the files are read and converted."""

    mapping: dict[str, dict[str, str]] = field(default_factory=dict)  # kind -> field -> column
    ts_unit: str = "ms"
    tz: tzinfo | None = None
    fmt: str | None = None  # None: by extension
    delimiter: str = ","


@dataclass
class History:
    """Everything read: catalog rows in file order, events in event-time order, problems."""

    catalog: list[Row] = field(default_factory=list)
    events: list[Row] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    read: Counter[str] = field(default_factory=Counter)  # rows read per kind

    @property
    def skipped_by_reason(self) -> dict[str, int]:
        return dict(Counter(p.reason for p in self.problems).most_common())


# ------------------------------------------------------------------------------ options


def parse_mapping(specs: Iterable[str]) -> dict[str, dict[str, str]]:
    """``["ts=created_at", "orders.sku=product_id"]`` -> ``{kind: {field: column}}``.

    A spec without ``KIND.`` applies to every kind that has the field. Raises ``ValueError``
    with the known fields when a spec names none.
    """
    out: dict[str, dict[str, str]] = {k: {} for k in KINDS}
    for spec in specs:
        target, sep, column = spec.partition("=")
        if not sep or not target or not column:
            raise ValueError(f"--map {spec!r}: expected FIELD=COLUMN or KIND.FIELD=COLUMN")
        kind_name, dot, fld = target.rpartition(".")
        kinds = [kind_name] if dot else [k for k in KINDS if fld in KINDS[k].fields]
        if dot and kind_name not in KINDS:
            raise ValueError(f"--map {spec!r}: unknown kind {kind_name!r} (use {', '.join(KINDS)})")
        if not kinds or any(fld not in KINDS[k].fields for k in kinds):
            known = "; ".join(f"{k}: {', '.join(KINDS[k].fields)}" for k in kinds or KINDS)
            raise ValueError(f"--map {spec!r}: no field {fld!r} (fields of {known})")
        for k in kinds:
            out[k][fld] = column
    return out


def file_format(path: Path, fmt: str | None) -> str:
    """``csv`` or ``jsonl``: ``fmt`` if given, else by the extension (``.gz`` looked through)."""
    if fmt:
        return fmt
    suffixes = [s.lower() for s in path.suffixes]
    if suffixes and suffixes[-1] == ".gz":
        suffixes = suffixes[:-1]
    ext = suffixes[-1] if suffixes else ""
    if ext == ".csv":
        return "csv"
    if ext in (".jsonl", ".ndjson"):
        return "jsonl"
    raise ValueError(
        f"{path}: cannot tell the format from the extension {ext or '(none)'!r}: name it "
        ".csv, .jsonl or .ndjson (optionally .gz), or pass --format csv|jsonl"
    )


def parse_time(value: str) -> int:
    """Epoch ms of ``--at``: an integer of epoch ms, or ISO 8601 with an offset."""
    v = value.strip()
    if v.isdigit():
        return int(v)
    dt = datetime.fromisoformat(v)
    if dt.tzinfo is None:
        raise ValueError(f"{value!r} has no UTC offset (add Z or +hh:mm)")
    return int(dt.timestamp() * 1000)


# ------------------------------------------------------------------------------ reading


def _open(path: Path) -> TextIO:
    if path.suffix.lower() == ".gz":
        return io.TextIOWrapper(gzip.open(path, "rb"), encoding="utf-8-sig", newline="")
    return path.open(encoding="utf-8-sig", newline="")


def _records(path: Path, fmt: str, delimiter: str) -> Iterator[tuple[int, Any]]:
    """(line number, raw record): a dict of column -> value, or a Rejection for the line."""
    with _open(path) as f:
        if fmt == "csv":
            reader = csv.DictReader(f, delimiter=delimiter)
            for rec in reader:
                yield reader.line_num, rec
            return
        for n, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except ValueError as exc:
                yield n, Rejection(reason="malformed_json", detail=str(exc)[:200])
                continue
            if not isinstance(obj, dict):
                yield n, Rejection(reason="wrong_type", detail="a line is not a JSON object")
                continue
            yield n, obj


def convert_ts(value: Any, *, unit: str, tz: tzinfo | None) -> int | Rejection | Any:
    """Epoch ms of a timestamp cell; a Rejection for a naive time without ``tz``; anything it
    cannot read is returned as it is, for the decoder to name the problem."""
    if isinstance(value, bool):
        return value
    num: float | None = None
    if isinstance(value, int | float):
        num = float(value)
    elif isinstance(value, str):
        s = value.strip()
        try:
            num = float(s)
        except ValueError:
            try:
                dt = datetime.fromisoformat(s)
            except ValueError:
                return value
            if dt.tzinfo is None:
                if tz is None:
                    return Rejection(
                        reason="naive_timestamp",
                        detail=f"{s!r} has no UTC offset: pass --tz (e.g. --tz UTC)",
                    )
                dt = dt.replace(tzinfo=tz)
            return int(dt.timestamp() * 1000)
    if num is None or num != num or num in (float("inf"), float("-inf")):
        return value
    return round(num * TS_UNITS[unit])


def _number(value: Any, typ: type) -> Any:
    """``"2"`` -> 2, ``"9.50"`` -> 9.5; what does not convert is left for the decoder."""
    if not isinstance(value, str):
        return value
    try:
        f = float(value.strip())
    except ValueError:
        return value
    if typ is int:
        return int(f) if f.is_integer() else value
    return f


def to_body(kind: Kind, rec: dict[Any, Any], opts: ReadOptions) -> dict[str, Any] | Rejection:
    """The event body of one raw record: mapped, emptied cells dropped, types converted."""
    cols = opts.mapping.get(kind.name, {})
    body: dict[str, Any] = {}
    for fld in kind.fields:
        v = rec.get(cols.get(fld, fld))
        if v is None or (isinstance(v, str) and not v.strip()):
            continue
        body[fld] = v.strip() if isinstance(v, str) else v
    for fld in kind.ints:
        if fld in body:
            body[fld] = _number(body[fld], int)
    for fld in kind.floats:
        if fld in body:
            body[fld] = _number(body[fld], float)
    if "ts" in body:
        ts = convert_ts(body["ts"], unit=opts.ts_unit, tz=opts.tz)
        if isinstance(ts, Rejection):
            return ts
        body["ts"] = ts
    return body


def read_file(
    kind_name: str, path: Path, opts: ReadOptions, settings: Settings, *, now_ms: int | None = None
) -> tuple[list[Row], list[Problem], int]:
    """Valid rows of one file (file order), the problems, and how many records were read."""
    kind = KINDS[kind_name]
    schema: Any = kind.schema  # decode() is generic over each event type, not their union
    fmt = file_format(path, opts.fmt)
    now = int(time.time() * 1000) if now_ms is None else now_ms
    not_after = now + int(settings.max_event_lead_s * 1000)
    rows: list[Row] = []
    problems: list[Problem] = []
    n = 0
    for line, rec in _records(path, fmt, opts.delimiter):
        n += 1
        body = rec if isinstance(rec, Rejection) else to_body(kind, rec, opts)
        if isinstance(body, Rejection):
            problems.append(Problem(kind.name, str(path), line, body.reason, body.detail))
            continue
        result: Order | Click | CatalogItem | Rejection = decode(
            msgspec.json.encode(body),
            schema,
            max_bytes=settings.max_payload_bytes,
            not_after_ms=not_after,
        )
        if isinstance(result, Rejection):
            problems.append(Problem(kind.name, str(path), line, result.reason, result.detail))
            continue
        ts = ts_ms(result.ts) if isinstance(result, Order | Click) else 0
        key = str(getattr(result, kind.key_field)).encode()
        rows.append(Row(ts, kind.name, key, msgspec.json.encode(result)))
    return rows, problems, n


def load(
    sources: Iterable[tuple[str, Path]],
    opts: ReadOptions,
    settings: Settings,
    progress: Callable[[str], None] | None = None,
) -> History:
    """Read every ``(kind, path)``: catalog in file order, orders and clicks merged by time."""
    h = History()
    for kind_name, path in sources:
        rows, problems, n = read_file(kind_name, path, opts, settings)
        if progress is not None:
            progress(f"replay: read {path} ({kind_name}): {n} rows, {len(problems)} skipped")
        h.read[kind_name] += n
        h.problems.extend(problems)
        (h.catalog if kind_name == "catalog" else h.events).extend(rows)
    h.events.sort(key=lambda r: r.ts)  # stable: equal times keep the order they were read in
    return h
