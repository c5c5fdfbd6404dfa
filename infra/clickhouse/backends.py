"""ClickHouse access layer for the repricer sink: what both backends share.

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

The backends themselves are ``native.py`` and ``embedded.py``, on what they share in
``base.py``; ``values.py`` checks and converts the values of a batch; ``connect()`` (in the package) picks a backend by URL. This module holds
the protocol, the errors, the schema loader, parameter escaping and URL masking.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from datetime import UTC, date, datetime
from decimal import Decimal
from importlib import resources
from typing import Any, Protocol, runtime_checkable
from urllib.parse import urlsplit
from uuid import UUID

from repricer.infra.clickhouse.tables import check_ident

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
