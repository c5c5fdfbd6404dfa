"""ClickHouse sink layer: the table registry (tables.py), its DDL (schema.sql) and the
native / chdb backends."""

from repricer.infra.clickhouse.backends import (
    DEFAULT_DATABASE,
    ChdbBackend,
    ClickHouseAuthError,
    ClickHouseBackend,
    ClickHouseError,
    ClickHouseUnavailable,
    Columns,
    NativeBackend,
    connect,
    load_schema,
    mask_url,
    rows_to_columns,
    substitute_params,
)
from repricer.infra.clickhouse.tables import (
    AGGREGATES,
    COLUMN_TYPES,
    REGISTRY,
    TABLES,
    Table,
    check_ident,
    row_type,
)

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
