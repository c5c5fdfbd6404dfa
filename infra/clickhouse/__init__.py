"""ClickHouse sink layer: schema (schema.sql) and the native / chdb backends."""

from infra.clickhouse.backends import (
    COLUMN_TYPES,
    DEFAULT_DATABASE,
    TABLES,
    ChdbBackend,
    ClickHouseAuthError,
    ClickHouseBackend,
    ClickHouseError,
    ClickHouseUnavailable,
    NativeBackend,
    check_ident,
    connect,
    load_schema,
    mask_url,
    substitute_params,
)

__all__ = [
    "COLUMN_TYPES",
    "DEFAULT_DATABASE",
    "TABLES",
    "ChdbBackend",
    "ClickHouseAuthError",
    "ClickHouseBackend",
    "ClickHouseError",
    "ClickHouseUnavailable",
    "NativeBackend",
    "check_ident",
    "connect",
    "load_schema",
    "mask_url",
    "substitute_params",
]
