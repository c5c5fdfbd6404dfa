"""ClickHouse sink layer: the table registry (tables.py), its DDL (schema.sql), the two backends
(native.py: a server; embedded.py: chdb; base.py: what they share) behind one protocol
(backends.py), the value checks (values.py), and ``connect()``, which picks a backend by URL."""

from __future__ import annotations

from repricer.infra.clickhouse.backends import (
    DEFAULT_DATABASE,
    ClickHouseAuthError,
    ClickHouseBackend,
    ClickHouseError,
    ClickHouseUnavailable,
    Columns,
    load_schema,
    mask_url,
    substitute_params,
)
from repricer.infra.clickhouse.embedded import ChdbBackend
from repricer.infra.clickhouse.native import NativeBackend
from repricer.infra.clickhouse.tables import (
    AGGREGATES,
    COLUMN_TYPES,
    REGISTRY,
    TABLES,
    Table,
    check_ident,
    row_type,
)
from repricer.infra.clickhouse.values import rows_to_columns

__all__ = [
    "AGGREGATES",
    "COLUMN_TYPES",
    "DEFAULT_DATABASE",
    "REGISTRY",
    "TABLES",
    "ChdbBackend",
    "ClickHouseAuthError",
    "ClickHouseBackend",
    "ClickHouseError",
    "ClickHouseUnavailable",
    "Columns",
    "NativeBackend",
    "Table",
    "check_ident",
    "connect",
    "load_schema",
    "mask_url",
    "row_type",
    "rows_to_columns",
    "substitute_params",
]


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
