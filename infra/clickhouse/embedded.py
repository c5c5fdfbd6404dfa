"""``ChdbBackend``: embedded ClickHouse (chdb) persisted in a local directory."""

from __future__ import annotations

import json
import math
import threading
from collections.abc import Mapping
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote
from uuid import UUID

import msgspec

from repricer.infra.clickhouse.backends import (
    _IDENT_RE,
    DEFAULT_DATABASE,
    ClickHouseError,
    ClickHouseUnavailable,
    substitute_params,
)
from repricer.infra.clickhouse.base import BackendBase
from repricer.infra.clickhouse.tables import COLUMN_TYPES, check_ident

# --------------------------------------------------------------------------- chdb

# chdb keeps process-global state and is not thread-safe: one lock for every session.
_CHDB_LOCK = threading.RLock()

_CHDB_SETTINGS = (
    "SET session_timezone = 'UTC'",
    "SET date_time_output_format = 'unix_timestamp'",
    "SET output_format_json_quote_64bit_integers = 1",
    "SET output_format_json_quote_denormals = 1",
    "SET output_format_json_quote_decimals = 1",
)


def _split_type_args(inner: str) -> list[str]:
    args: list[str] = []
    depth = 0
    quoted = False
    start = 0
    for i, ch in enumerate(inner):
        if ch == "'" and (i == 0 or inner[i - 1] != "\\"):
            quoted = not quoted
        elif quoted:
            continue
        elif ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        elif ch == "," and depth == 0:
            args.append(inner[start:i].strip())
            start = i + 1
    args.append(inner[start:].strip())
    return args


def _type_head(ch_type: str) -> tuple[str, str]:
    if "(" in ch_type and ch_type.endswith(")"):
        head, _, rest = ch_type.partition("(")
        return head.strip(), rest[:-1]
    return ch_type.strip(), ""


def _from_json(value: Any, ch_type: str) -> Any:
    """Convert one JSONCompact value of ``ch_type`` to the clickhouse-driver Python type."""
    head, inner = _type_head(ch_type)
    if head in ("Nullable", "LowCardinality", "SimpleAggregateFunction"):
        if value is None:
            return None
        return _from_json(value, _split_type_args(inner)[-1])
    if value is None:
        return None
    if head.startswith(("UInt", "Int")):
        return int(value)
    if head.startswith(("Float", "BFloat")):
        return float(value)
    if head == "Bool":
        return bool(value)
    if head.startswith("Decimal"):
        return Decimal(str(value))
    if head in ("DateTime", "DateTime64"):
        return datetime.fromtimestamp(float(value) if head == "DateTime64" else int(value), UTC)
    if head in ("Date", "Date32"):
        return date.fromisoformat(value)
    if head == "UUID":
        return UUID(value)
    if head == "Array":
        return [_from_json(v, inner) for v in value]
    if head == "Tuple":
        item_types = [_strip_tuple_name(t) for t in _split_type_args(inner)]
        items = value.values() if isinstance(value, dict) else value
        return tuple(_from_json(v, t) for v, t in zip(items, item_types, strict=True))
    return value


def _strip_tuple_name(arg: str) -> str:
    # Named tuple elements look like `name Type`; type names never contain spaces at top level
    # except inside parentheses.
    head, sep, rest = arg.partition(" ")
    if sep and "(" not in head and _IDENT_RE.match(head) and rest[:1].isupper():
        return rest.strip()
    return arg


class ChdbBackend(BackendBase):
    """Embedded ClickHouse via chdb, persisted in ``path`` (not thread-safe: calls are locked)."""

    def __init__(self, path: str | Path, *, database: str = DEFAULT_DATABASE) -> None:
        self.database = check_ident(database, "database")
        self.path = Path(path)
        self._session: Any = None

    @classmethod
    def from_url(cls, url: str) -> ChdbBackend:
        if not url.startswith("chdb://"):
            raise ValueError(f"not a chdb:// URL: {url}")
        rest = url[len("chdb://") :]
        path_part, _, query_part = rest.partition("?")
        query = {k: v[-1] for k, v in parse_qs(query_part).items()}
        database = query.pop("database", DEFAULT_DATABASE)
        if query:
            raise ValueError(f"unsupported URL options: {sorted(query)}")
        path = unquote(path_part)
        if not path:
            raise ValueError("chdb URL needs a path: chdb:///abs/path or chdb://relative/path")
        return cls(path, database=database)

    def __repr__(self) -> str:
        return f"ChdbBackend(chdb://{self.path}?database={self.database})"

    __str__ = __repr__

    def _ensure_session(self) -> Any:
        if self._session is None:
            try:
                from chdb import session as chdb_session
            except ImportError as exc:
                raise ClickHouseUnavailable(
                    f"{self!r}: embedded ClickHouse needs chdb: pip install 'repricer[local]' "
                    "(or point REPRICER_CLICKHOUSE_URL at a ClickHouse server)"
                ) from exc

            self.path.mkdir(parents=True, exist_ok=True)
            try:
                sess = chdb_session.Session(str(self.path))
            except Exception as exc:
                raise ClickHouseUnavailable(f"{self!r}: cannot open chdb session: {exc}") from exc
            for stmt in _CHDB_SETTINGS:
                sess.query(stmt)
            self._session = sess
        return self._session

    def _execute(self, sql: str, fmt: str = "CSV") -> bytes:
        with _CHDB_LOCK:
            sess = self._ensure_session()
            try:
                res = sess.query(sql, fmt)
            except Exception as exc:
                raise ClickHouseError(str(exc)) from exc
        if res is None:
            return b""
        data = res.bytes() if hasattr(res, "bytes") else bytes(res)
        return data or b""

    def _insert_prepared(self, table: str, into: str, values: list[list[Any]]) -> None:
        for idx, (_, ch_type) in enumerate(COLUMN_TYPES[table]):
            if ch_type == "Float64" and not all(map(math.isfinite, values[idx])):
                values[idx] = [_float_json(v) for v in values[idx]]  # JSON has no nan/inf
        body = _json_encode(values).decode()
        self._execute(f"INSERT INTO {into} FORMAT JSONCompactColumns\n{body}")

    def query(self, sql: str, params: Mapping[str, Any] | None = None) -> list[tuple[Any, ...]]:
        raw = self._execute(substitute_params(sql, params), "JSONCompact")
        if not raw.strip():
            return []
        doc = json.loads(raw)
        types = [m["type"] for m in doc.get("meta", [])]
        return [
            tuple(_from_json(v, t) for v, t in zip(row, types, strict=True))
            for row in doc.get("data", [])
        ]

    def close(self) -> None:
        with _CHDB_LOCK:
            if self._session is not None:
                try:
                    self._session.close()
                finally:
                    self._session = None


_json_encode = msgspec.json.Encoder().encode


def _float_json(value: float) -> float | str:
    if math.isnan(value):
        return "nan"
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    return value
