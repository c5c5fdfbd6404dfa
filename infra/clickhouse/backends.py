"""ClickHouse access layer for the repricer sink.

Two interchangeable backends behind one small protocol:

* ``NativeBackend`` -- a real ClickHouse server over the native TCP protocol
  (clickhouse-driver), URL ``clickhouse://user:pass@host:9000/db`` or ``clickhouses://`` (TLS).
* ``ChdbBackend`` -- embedded ClickHouse (chdb) persisted in a local directory,
  URL ``chdb:///abs/path`` or ``chdb://relative/path`` (optional ``?database=db``).

Both accept a batch either as columns (``insert_columns``: one sequence per column, validated
once per column, which is what the sink uses) or as rows (``insert``: mappings, checked per row
and then transposed), with DateTime values as int epoch milliseconds, and return query results as lists of tuples with identical Python types
(ints, floats, str, lists, tz-aware UTC datetimes).  Query parameters use the
``%(name)s`` syntax and are escaped client-side by :func:`substitute_params`.
"""

from __future__ import annotations

import json
import math
import re
import threading
from array import array
from collections.abc import Mapping, Sequence
from datetime import UTC, date, datetime
from decimal import Decimal
from importlib import resources
from pathlib import Path
from typing import Any, Protocol, runtime_checkable
from urllib.parse import parse_qs, unquote, urlsplit
from uuid import UUID

import msgspec

from repricer.infra.clickhouse.tables import COLUMN_TYPES, TABLES, check_ident, row_type
from repricer.infra.clickhouse.tables import INT_RANGES as _INT_RANGES

__all__ = [
    "COLUMN_TYPES",
    "DEFAULT_DATABASE",
    "TABLES",
    "ChdbBackend",
    "ClickHouseAuthError",
    "ClickHouseBackend",
    "ClickHouseError",
    "ClickHouseUnavailable",
    "Columns",
    "NativeBackend",
    "check_ident",
    "connect",
    "load_schema",
    "mask_url",
    "row_type",
    "rows_to_columns",
    "substitute_params",
]

Columns = Mapping[str, Sequence[Any]]

DEFAULT_DATABASE = "repricer"

_IDENT_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
# `repricer` used as a database name: `repricer.table` or a bare trailing `repricer`.
_DB_TOKEN_RE = re.compile(r"(?<![\w.`])repricer(?=\.|\s*$)")
_PARAM_RE = re.compile(r"%\((\w+)\)s")


class ClickHouseError(Exception):
    """Any failure reported by a ClickHouse backend."""


class ClickHouseAuthError(ClickHouseError):
    """The server refused the user or password: the configuration is wrong, not the network."""


# UNKNOWN_USER, WRONG_PASSWORD, REQUIRED_PASSWORD, AUTHENTICATION_FAILED (newer servers)
_AUTH_ERROR_CODES = frozenset({192, 193, 194, 516})


class ClickHouseUnavailable(ClickHouseError):
    """The server cannot be reached (refused, timed out, dropped); safe to retry with backoff."""


@runtime_checkable
class ClickHouseBackend(Protocol):
    """What the sink needs from ClickHouse."""

    database: str

    def init(self) -> None:
        """Apply schema.sql idempotently (safe to call many times)."""
        ...

    def insert(self, table: str, rows: Sequence[Mapping[str, Any]]) -> int:
        """Insert rows (dicts keyed by column name); returns the number of rows written."""
        ...

    def insert_columns(self, table: str, columns: Columns, *, checked: bool = False) -> int:
        """Insert one batch given as columns: every column of ``table`` by name, each a sequence
        of values in row order (all the same length). Validated once per column; with
        ``checked=True`` the columns of ``row_type(table)`` are taken as already validated
        (decoded against it). Returns the number of rows written."""
        ...

    def query(self, sql: str, params: Mapping[str, Any] | None = None) -> list[tuple[Any, ...]]:
        """Run a query with ``%(name)s`` parameters; rows as tuples."""
        ...

    def close(self) -> None:
        """Release the connection / session."""
        ...


# --------------------------------------------------------------------------- schema


def load_schema(database: str = DEFAULT_DATABASE) -> list[str]:
    """Return the schema.sql statements with the database name substituted."""
    check_ident(database, "database")
    text = resources.files(__package__).joinpath("schema.sql").read_text(encoding="utf-8")
    statements: list[str] = []
    current: list[str] = []
    for line in text.splitlines():
        stripped = line.strip()
        if stripped == ";":
            stmt = "\n".join(current).strip()
            current = []
            if stmt:
                statements.append(_DB_TOKEN_RE.sub(database, stmt))
        elif stripped and not stripped.startswith("--"):
            current.append(line)
    tail = "\n".join(current).strip().rstrip(";").strip()
    if tail:
        statements.append(_DB_TOKEN_RE.sub(database, tail))
    return statements


# --------------------------------------------------------------------------- escaping

_ESCAPES = {
    "\\": "\\\\",
    "'": "\\'",
    "\b": "\\b",
    "\f": "\\f",
    "\r": "\\r",
    "\n": "\\n",
    "\t": "\\t",
    "\0": "\\0",
    "\a": "\\a",
    "\v": "\\v",
}


def _escape(value: Any) -> str:
    if value is None:
        return "NULL"
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, int):
        return str(int(value))
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, Decimal):
        if not value.is_finite():
            raise ValueError(f"non-finite Decimal parameter: {value!r}")
        return format(value, "f")
    if isinstance(value, str):
        return "'" + "".join(_ESCAPES.get(c, c) for c in value) + "'"
    if isinstance(value, datetime):
        # Naive datetimes are taken as UTC; the epoch form is server-timezone independent.
        aware = value if value.tzinfo is not None else value.replace(tzinfo=UTC)
        return f"toDateTime({math.floor(aware.timestamp())})"
    if isinstance(value, date):
        return f"toDate('{value.isoformat()}')"
    if isinstance(value, UUID):
        return f"toUUID('{value}')"
    if isinstance(value, list | tuple | set | frozenset):
        inner = ", ".join(_escape(v) for v in value)
        return f"({inner})" if isinstance(value, tuple) else f"[{inner}]"
    raise TypeError(f"unsupported query parameter type: {type(value).__name__}")


def substitute_params(sql: str, params: Mapping[str, Any] | None) -> str:
    """Substitute ``%(name)s`` placeholders with escaped SQL literals.

    With ``params=None`` the SQL is returned untouched.  Otherwise ``%%`` stands for a
    literal ``%`` (Python %-format rules, like clickhouse-driver).
    """
    if params is None:
        return sql
    escaped = {key: _escape(value) for key, value in params.items()}
    missing = set(_PARAM_RE.findall(sql)) - escaped.keys()
    if missing:
        raise KeyError(f"missing query parameters: {sorted(missing)}")
    return sql % escaped


# --------------------------------------------------------------------------- values in

# Integer columns are range-checked by building a C array of the matching width once per column
# (OverflowError names the problem; much cheaper than min() and max() over Python ints).
_INT_ARRAY_CODES = {"UInt32": "I", "UInt64": "Q", "Int32": "i", "Int64": "q"}
assert all(array(c).itemsize * 8 == int(t[-2:]) for t, c in _INT_ARRAY_CODES.items())


def _ms_to_seconds(value: Any, column: str) -> int:
    if isinstance(value, bool):
        raise TypeError(f"{column}: expected epoch milliseconds, got bool")
    if isinstance(value, int):
        return value // 1000
    if isinstance(value, float) and math.isfinite(value):
        return math.floor(value / 1000)
    if isinstance(value, datetime):
        aware = value if value.tzinfo is not None else value.replace(tzinfo=UTC)
        return math.floor(aware.timestamp())
    raise TypeError(f"{column}: expected epoch milliseconds (int), got {value!r}")


def _first_bad(values: Sequence[Any], ok: Any) -> Any:
    return next(v for v in values if not ok(v))


def _check_range(values: Sequence[int], ch_type: str, column: str, what: str = "") -> None:
    try:
        array(_INT_ARRAY_CODES[ch_type], values)
    except OverflowError:
        lo, hi = _INT_RANGES[ch_type]
        bad = _first_bad(values, lambda v: lo <= v <= hi)
        raise ValueError(f"{column}: {bad!r} is outside {what or ch_type}") from None


def _check_column(values: Sequence[Any], ch_type: str, column: str) -> list[Any]:
    """One column normalised for ``ch_type`` (DateTime: int epoch seconds), checked as a whole.

    The fast paths look at the set of value types once (``set(map(type, values))`` runs in C),
    and at min/max for integer ranges; only a column that fails them is walked value by value,
    to name the offending value.
    """
    types = set(map(type, values))
    if ch_type == "DateTime":
        if types <= {int}:
            seconds = [v // 1000 for v in values]
        else:
            seconds = [_ms_to_seconds(v, column) for v in values]
        _check_range(seconds, "UInt32", column, "DateTime (epoch seconds)")
        return seconds
    if ch_type == "String":
        if types <= {str} or all(isinstance(v, str) for v in values):
            return values if isinstance(values, list) else list(values)
        bad = _first_bad(values, lambda v: isinstance(v, str))
        raise TypeError(f"{column}: expected str, got {type(bad).__name__}")
    if ch_type == "Float64":
        if types <= {float}:
            return values if isinstance(values, list) else list(values)
        if bool in types or not all(issubclass(t, int | float | Decimal) for t in types):
            bad = _first_bad(
                values, lambda v: isinstance(v, int | float | Decimal) and not isinstance(v, bool)
            )
            raise TypeError(f"{column}: expected a number, got {bad!r}")
        return [float(v) for v in values]
    if ch_type in _INT_RANGES:
        if not types <= {int}:
            bad = _first_bad(values, lambda v: type(v) is int)
            raise TypeError(f"{column}: expected int, got {bad!r}")
        _check_range(values, ch_type, column)
        return values if isinstance(values, list) else list(values)
    if ch_type == "Array(String)":
        out = []
        for value in values:
            if isinstance(value, str) or not isinstance(value, Sequence):
                raise TypeError(f"{column}: expected a list of str, got {value!r}")
            items = list(value)
            if not all(isinstance(v, str) for v in items):
                raise TypeError(f"{column}: expected a list of str, got {value!r}")
            out.append(items)
        return out
    raise TypeError(f"{column}: unsupported column type {ch_type}")  # pragma: no cover


def _seconds(values: Sequence[int]) -> list[int]:
    return [v // 1000 for v in values]


def _prepare_columns(
    table: str, columns: Columns, *, checked: bool = False
) -> tuple[int, list[list[Any]]]:
    """Validate a column batch against the table: (rows, columns in DDL order, normalised).

    ``checked``: the columns of ``row_type(table)`` were decoded against it, so they only
    need converting (DateTime to seconds); the others are checked as usual.
    """
    if table not in COLUMN_TYPES:
        raise ValueError(f"unknown table: {table!r}")
    names = TABLES[table]
    if columns.keys() != set(names):
        extra = sorted(set(columns) - set(names))
        missing = [n for n in names if n not in columns]
        raise ValueError(f"{table}: unknown columns {extra}, missing columns {missing}")
    lengths = {len(columns[n]) for n in names}
    if len(lengths) != 1:
        raise ValueError(f"{table}: columns of different lengths {sorted(lengths)}")
    n = lengths.pop()
    trusted = row_type(table).__struct_fields__ if checked else ()
    return n, [
        (_seconds(columns[name]) if t == "DateTime" else list(columns[name]))
        if name in trusted
        else _check_column(columns[name], t, name)
        for name, t in COLUMN_TYPES[table]
    ]


def rows_to_columns(table: str, rows: Sequence[Mapping[str, Any]]) -> dict[str, list[Any]]:
    """Transpose row mappings into columns, checking every row has exactly the table's columns."""
    if table not in COLUMN_TYPES:
        raise ValueError(f"unknown table: {table!r}")
    names = TABLES[table]
    want = set(names)
    for i, row in enumerate(rows):
        if row.keys() != want:
            extra = set(row) - want
            if extra:
                raise ValueError(f"{table} row {i}: unknown columns {sorted(extra)}")
            missing = [n for n in names if n not in row]
            raise ValueError(f"{table} row {i}: missing columns {missing}")
    return {name: [row[name] for row in rows] for name in names}


# --------------------------------------------------------------------------- URLs


def mask_url(url: str) -> str:
    """Return ``url`` with any password replaced by ``***``."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    user = parts.username or ""
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    netloc = f"{user}:***@{host}"
    if parts.port is not None:
        netloc += f":{parts.port}"
    return parts._replace(netloc=netloc).geturl()


def _utc(value: datetime, server_tz: Any) -> datetime:
    if value.tzinfo is None:
        value = server_tz.localize(value) if server_tz is not None else value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


def _normalise_native(value: Any, server_tz: Any) -> Any:
    if isinstance(value, datetime):
        return _utc(value, server_tz)
    if isinstance(value, list):
        return [_normalise_native(v, server_tz) for v in value]
    if isinstance(value, tuple):
        return tuple(_normalise_native(v, server_tz) for v in value)
    return value


# --------------------------------------------------------------------------- native


_NATIVE_FLOAT_OPTS = ("connect_timeout", "send_receive_timeout", "sync_request_timeout")
_NATIVE_BOOL_OPTS = ("verify", "compression")
_NATIVE_STR_OPTS = ("ca_certs", "client_name")


class NativeBackend:
    """ClickHouse server over the native protocol (clickhouse-driver, columnar inserts)."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 9000,
        *,
        user: str = "default",
        password: str = "",
        database: str = DEFAULT_DATABASE,
        secure: bool = False,
        connect_timeout: float = 5.0,
        send_receive_timeout: float = 30.0,
        sync_request_timeout: float = 5.0,
        **client_kwargs: Any,
    ) -> None:
        from clickhouse_driver import Client

        self.database = check_ident(database, "database")
        self.host = host
        self.port = port
        self.user = user
        self.secure = secure
        self._lock = threading.RLock()
        # The client connects lazily on first execute(); it reconnects after failures.
        # The database may not exist yet, so connect to `default` and fully qualify names.
        self._client = Client(
            host=host,
            port=port,
            user=user,
            password=password,
            database="default",
            secure=secure,
            connect_timeout=connect_timeout,
            send_receive_timeout=send_receive_timeout,
            sync_request_timeout=sync_request_timeout,
            **client_kwargs,
        )

    @classmethod
    def from_url(cls, url: str) -> NativeBackend:
        parts = urlsplit(url)
        if parts.scheme not in ("clickhouse", "clickhouses"):
            raise ValueError(f"not a clickhouse:// URL: {mask_url(url)}")
        query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        secure = parts.scheme == "clickhouses" or query.pop("secure", "0").lower() in (
            "1",
            "true",
            "yes",
        )
        kwargs: dict[str, Any] = {}
        for key in _NATIVE_FLOAT_OPTS:
            if key in query:
                kwargs[key] = float(query.pop(key))
        for key in _NATIVE_BOOL_OPTS:
            if key in query:
                kwargs[key] = query.pop(key).lower() in ("1", "true", "yes")
        for key in _NATIVE_STR_OPTS:
            if key in query:
                kwargs[key] = query.pop(key)
        database = query.pop("database", None) or unquote(parts.path.lstrip("/"))
        if query:
            raise ValueError(f"unsupported URL options: {sorted(query)}")
        return cls(
            host=parts.hostname or "127.0.0.1",
            port=parts.port or (9440 if secure else 9000),
            user=unquote(parts.username) if parts.username else "default",
            password=unquote(parts.password) if parts.password else "",
            database=database or DEFAULT_DATABASE,
            secure=secure,
            **kwargs,
        )

    def __repr__(self) -> str:
        scheme = "clickhouses" if self.secure else "clickhouse"
        return f"NativeBackend({scheme}://{self.user}:***@{self.host}:{self.port}/{self.database})"

    __str__ = __repr__

    def _execute(self, sql: str, data: Any = None, **kwargs: Any) -> Any:
        from clickhouse_driver import errors

        try:
            with self._lock:
                return self._client.execute(sql, data, **kwargs)
        except (errors.NetworkError, errors.SocketTimeoutError, EOFError, OSError) as exc:
            self._client.disconnect()
            raise ClickHouseUnavailable(f"{self!r}: {exc}") from exc
        except errors.Error as exc:
            # Server messages never carry the password; the masked repr says where and as whom.
            msg = str(exc).split("Stack trace:")[0].strip()
            if getattr(exc, "code", None) in _AUTH_ERROR_CODES:
                raise ClickHouseAuthError(f"{self!r}: authentication failed: {msg}") from exc
            raise ClickHouseError(msg) from exc

    def init(self) -> None:
        for stmt in load_schema(self.database):
            self._execute(stmt)

    def insert(self, table: str, rows: Sequence[Mapping[str, Any]]) -> int:
        return self.insert_columns(table, rows_to_columns(table, rows))

    def insert_columns(self, table: str, columns: Columns, *, checked: bool = False) -> int:
        n, values = _prepare_columns(table, columns, checked=checked)
        if not n:
            return 0
        # DateTime columns go in as int epoch seconds, which the driver sends as they are
        cols = ", ".join(TABLES[table])
        self._execute(f"INSERT INTO {self.database}.{table} ({cols}) VALUES", values, columnar=True)
        return n

    def _server_tz(self) -> Any:
        import pytz

        info = self._client.connection.server_info
        return pytz.timezone(info.get_timezone()) if info is not None else None

    def query(self, sql: str, params: Mapping[str, Any] | None = None) -> list[tuple[Any, ...]]:
        rows = self._execute(substitute_params(sql, params))
        if not isinstance(rows, list):
            return []
        tz = self._server_tz()
        return [tuple(_normalise_native(v, tz) for v in row) for row in rows]

    def close(self) -> None:
        with self._lock:
            self._client.disconnect()


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


class ChdbBackend:
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

    def _run(self, sql: str, fmt: str = "CSV") -> bytes:
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

    def init(self) -> None:
        for stmt in load_schema(self.database):
            self._run(stmt)

    def insert(self, table: str, rows: Sequence[Mapping[str, Any]]) -> int:
        return self.insert_columns(table, rows_to_columns(table, rows))

    def insert_columns(self, table: str, columns: Columns, *, checked: bool = False) -> int:
        n, values = _prepare_columns(table, columns, checked=checked)
        if not n:
            return 0
        for idx, (_, ch_type) in enumerate(COLUMN_TYPES[table]):
            if ch_type == "Float64" and not all(map(math.isfinite, values[idx])):
                values[idx] = [_float_json(v) for v in values[idx]]  # JSON has no nan/inf
        cols = ", ".join(TABLES[table])
        body = _json_encode(values).decode()
        self._run(f"INSERT INTO {self.database}.{table} ({cols}) FORMAT JSONCompactColumns\n{body}")
        return n

    def query(self, sql: str, params: Mapping[str, Any] | None = None) -> list[tuple[Any, ...]]:
        raw = self._run(substitute_params(sql, params), "JSONCompact")
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


# --------------------------------------------------------------------------- factory


def connect(url: str) -> ClickHouseBackend:
    """Build a backend from a URL (``clickhouse://``, ``clickhouses://`` or ``chdb://``).

    Connections are lazy: nothing touches the network or disk until the first call.
    """
    scheme = url.split("://", 1)[0].lower() if "://" in url else ""
    if scheme in ("clickhouse", "clickhouses"):
        return NativeBackend.from_url(url)
    if scheme == "chdb":
        return ChdbBackend.from_url(url)
    raise ValueError(f"unsupported ClickHouse URL scheme: {mask_url(url)!r}")
