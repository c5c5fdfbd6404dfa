"""Additive schema changes for tables created by an earlier schema.sql.

``CREATE TABLE IF NOT EXISTS`` leaves a table that exists as it is, and ClickHouse 18.16 has no
``ADD COLUMN IF NOT EXISTS``; so after schema.sql, every column the registry has and the table
lacks is added (``ALTER TABLE ... ADD COLUMN <name> <type> AFTER <previous>``, which both 18.16
and current ClickHouse run), in registry order. Only columns outside the key and before
``version`` can be added this way; anything else is not additive and raises.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from repricer.infra.clickhouse.tables import REGISTRY, check_ident


def missing_columns(database: str, have: dict[str, set[str]]) -> list[str]:
    """The ``ALTER TABLE`` statements that add what the registry has and ``have`` lacks
    (``have``: table -> its columns; tables not in it are skipped).

    >>> missing_columns("db", {"forecasts": {"sku", "window_start", "model", "version"}})
    ['ALTER TABLE db.forecasts ADD COLUMN predicted Float64 AFTER model', \
'ALTER TABLE db.forecasts ADD COLUMN actual Float64 AFTER predicted']
    """
    check_ident(database, "database")
    out = []
    for name, table in REGISTRY.items():
        cols = have.get(name)
        if not cols:
            continue
        for i, (col, typ) in enumerate(table.columns):
            if col in cols:
                continue
            if col in table.key or col == "version" or i == 0:
                raise RuntimeError(f"{name}.{col} is missing and cannot be added in place")
            prev = table.columns[i - 1][0]
            out.append(f"ALTER TABLE {table.at(database)} ADD COLUMN {col} {typ} AFTER {prev}")
    return out


def migrate(database: str, query: Callable[[str], list[tuple[Any, ...]]]) -> list[str]:
    """Add the missing columns through ``query`` (runs one SQL statement); returns them."""
    rows = query(
        f"SELECT table, name FROM system.columns WHERE database = '{check_ident(database)}'"
    )
    have: dict[str, set[str]] = {}
    for table, col in rows:
        have.setdefault(str(table), set()).add(str(col))
    stmts = missing_columns(database, have)
    for stmt in stmts:
        query(stmt)
    return stmts
